import i18n from "i18next";
import { initReactI18next } from "react-i18next";

const en = {
  appName: "CRM",
  signIn: "Sign in", signOut: "Sign out", email: "Email", password: "Password",
  signInFailed: "Wrong email or password",
  contacts: "Contacts", deals: "Deals", search: "Search by name, email or phone",
  noContacts: "No contacts found", loadingMore: "Loading more…",
  name: "Name", phone: "Phone", owner: "Owner", status: "Status", company: "Company",
  details: "Details", timeline: "Timeline", noTimeline: "Nothing happened yet",
  back: "Back", position: "Position", tags: "Tags", source: "Source",
  doNotContact: "Do not contact",
  pipeline: "Pipeline", noDeals: "No deals",
  lostReason: "Why was it lost?", lostReasonPlaceholder: "e.g. price, competitor",
  markLost: "Mark lost", cancel: "Cancel", moveFailed: "The deal could not be moved",
  notifications: "Notifications", noNotifications: "No notifications", markRead: "Mark read",
  incomingCall: "Incoming call", openContact: "Open contact", dismiss: "Dismiss",
  unknownCaller: "Unknown caller",
  live: "Live", offline: "Offline", language: "Language",
  retry: "Retry", serviceUnavailable: "A service is not answering right now.",
};
type Texts = typeof en;

const it: Texts = {
  appName: "CRM",
  signIn: "Accedi", signOut: "Esci", email: "Email", password: "Password",
  signInFailed: "Email o password errate",
  contacts: "Contatti", deals: "Trattative", search: "Cerca per nome, email o telefono",
  noContacts: "Nessun contatto trovato", loadingMore: "Caricamento…",
  name: "Nome", phone: "Telefono", owner: "Responsabile", status: "Stato", company: "Azienda",
  details: "Dettagli", timeline: "Cronologia", noTimeline: "Ancora nulla",
  back: "Indietro", position: "Ruolo", tags: "Etichette", source: "Fonte",
  doNotContact: "Non contattare",
  pipeline: "Pipeline", noDeals: "Nessuna trattativa",
  lostReason: "Perché è persa?", lostReasonPlaceholder: "es. prezzo, concorrente",
  markLost: "Segna come persa", cancel: "Annulla", moveFailed: "Impossibile spostare la trattativa",
  notifications: "Notifiche", noNotifications: "Nessuna notifica", markRead: "Segna come letta",
  incomingCall: "Chiamata in arrivo", openContact: "Apri contatto", dismiss: "Chiudi",
  unknownCaller: "Chiamante sconosciuto",
  live: "In diretta", offline: "Non connesso", language: "Lingua",
  retry: "Riprova", serviceUnavailable: "Un servizio non risponde in questo momento.",
};

const he: Texts = {
  appName: "CRM",
  signIn: "התחברות", signOut: "התנתקות", email: "דוא\"ל", password: "סיסמה",
  signInFailed: "דוא\"ל או סיסמה שגויים",
  contacts: "אנשי קשר", deals: "עסקאות", search: "חיפוש לפי שם, דוא\"ל או טלפון",
  noContacts: "לא נמצאו אנשי קשר", loadingMore: "טוען…",
  name: "שם", phone: "טלפון", owner: "אחראי", status: "סטטוס", company: "חברה",
  details: "פרטים", timeline: "ציר זמן", noTimeline: "עדיין לא קרה דבר",
  back: "חזרה", position: "תפקיד", tags: "תגיות", source: "מקור",
  doNotContact: "לא ליצור קשר",
  pipeline: "צנרת", noDeals: "אין עסקאות",
  lostReason: "למה העסקה אבדה?", lostReasonPlaceholder: "למשל מחיר, מתחרה",
  markLost: "סמן כאבודה", cancel: "ביטול", moveFailed: "לא ניתן להזיז את העסקה",
  notifications: "התראות", noNotifications: "אין התראות", markRead: "סמן כנקרא",
  incomingCall: "שיחה נכנסת", openContact: "פתח איש קשר", dismiss: "סגור",
  unknownCaller: "מתקשר לא ידוע",
  live: "מחובר", offline: "לא מחובר", language: "שפה",
  retry: "נסה שוב", serviceUnavailable: "שירות אינו עונה כרגע.",
};

export const LANGUAGES = { en: "English", it: "Italiano", he: "עברית" } as const;
export type Language = keyof typeof LANGUAGES;
const RTL = new Set(["he", "ar", "fa"]);

export function applyDirection(language: string) {
  document.documentElement.lang = language;
  document.documentElement.dir = RTL.has(language) ? "rtl" : "ltr";
}

const saved = localStorage.getItem("crm.language");
const initial = saved && saved in LANGUAGES ? saved
  : (navigator.language || "en").slice(0, 2) in LANGUAGES ? (navigator.language || "en").slice(0, 2) : "en";

i18n.use(initReactI18next).init({
  resources: { en: { translation: en }, it: { translation: it }, he: { translation: he } },
  lng: initial, fallbackLng: "en", interpolation: { escapeValue: false },
});
applyDirection(initial);
i18n.on("languageChanged", (language) => {
  localStorage.setItem("crm.language", language);
  applyDirection(language);
});

export default i18n;
