import i18n from "i18next";
import { initReactI18next } from "react-i18next";
import en from "./locales/en";
import es from "./locales/es";
import he from "./locales/he";
import it from "./locales/it";
import ru from "./locales/ru";

export const LANGUAGES = { en: "English", it: "Italiano", es: "Español", ru: "Русский", he: "עברית" } as const;
export type Language = keyof typeof LANGUAGES;
const RTL = new Set(["he", "ar", "fa"]);

export function applyDirection(language: string) {
  document.documentElement.lang = language;
  document.documentElement.dir = RTL.has(language) ? "rtl" : "ltr";
}

const saved = localStorage.getItem("crm.language");
const browser = (navigator.language || "en").slice(0, 2);
const initial = saved && saved in LANGUAGES ? saved : browser in LANGUAGES ? browser : "en";

i18n.use(initReactI18next).init({
  resources: { en: { translation: en }, it: { translation: it }, es: { translation: es }, ru: { translation: ru },
               he: { translation: he } },
  lng: initial, fallbackLng: "en", interpolation: { escapeValue: false },
});
applyDirection(initial);
i18n.on("languageChanged", (language) => {
  localStorage.setItem("crm.language", language);
  applyDirection(language);
});

export default i18n;
