import "@mantine/core/styles.css";
import "@mantine/notifications/styles.css";
import React, { lazy, Suspense, useEffect } from "react";
import ReactDOM from "react-dom/client";
import { DirectionProvider, Loader, MantineProvider, useDirection } from "@mantine/core";
import { Notifications } from "@mantine/notifications";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import "./i18n";
import { SessionProvider, useSession } from "./auth";
import { Layout } from "./components/Layout";
import { Login } from "./pages/Login";
import { StreamProvider } from "./stream";

const Contacts = lazy(() => import("./pages/Contacts").then((m) => ({ default: m.Contacts })));
const ContactCard = lazy(() => import("./pages/ContactCard").then((m) => ({ default: m.ContactCard })));
const DealsBoard = lazy(() => import("./pages/DealsBoard").then((m) => ({ default: m.DealsBoard })));
const Today = lazy(() => import("./pages/Today").then((m) => ({ default: m.Today })));
const Tasks = lazy(() => import("./pages/Tasks").then((m) => ({ default: m.Tasks })));
const Calls = lazy(() => import("./pages/Calls").then((m) => ({ default: m.Calls })));
const Companies = lazy(() => import("./pages/Companies").then((m) => ({ default: m.Companies })));
const Import = lazy(() => import("./pages/Import").then((m) => ({ default: m.Import })));
const Pipelines = lazy(() => import("./pages/Pipelines").then((m) => ({ default: m.Pipelines })));
const Dashboard = lazy(() => import("./pages/Dashboard").then((m) => ({ default: m.Dashboard })));
const Access = lazy(() => import("./pages/Access").then((m) => ({ default: m.Access })));
const Reports = lazy(() => import("./pages/Reports").then((m) => ({ default: m.Reports })));
const NotificationSettings = lazy(() => import("./pages/NotificationSettings").then((m) => ({ default: m.NotificationSettings })));
const Inbox = lazy(() => import("./pages/Inbox").then((m) => ({ default: m.Inbox })));
const Telephony = lazy(() => import("./pages/Telephony").then((m) => ({ default: m.Telephony })));
const CustomFieldSettings = lazy(() => import("./pages/CustomFieldSettings").then((m) => ({ default: m.CustomFieldSettings })));
const Webhooks = lazy(() => import("./pages/Webhooks").then((m) => ({ default: m.Webhooks })));
const WebForms = lazy(() => import("./pages/WebForms").then((m) => ({ default: m.WebForms })));
const Automation = lazy(() => import("./pages/Automation").then((m) => ({ default: m.Automation })));
const MailboxSettings = lazy(() => import("./pages/Mailboxes").then((m) => ({ default: m.MailboxSettings })));
const Templates = lazy(() => import("./pages/Templates").then((m) => ({ default: m.Templates })));
const AuditLog = lazy(() => import("./pages/Operations").then((m) => ({ default: m.AuditLog })));
const DeadLetters = lazy(() => import("./pages/Operations").then((m) => ({ default: m.DeadLetters })));
const Campaigns = lazy(() => import("./pages/Campaigns").then((m) => ({ default: m.Campaigns })));
const SalesSettings = lazy(() => import("./pages/SalesSettings").then((m) => ({ default: m.SalesSettings })));
const CompanyCard = lazy(() => import("./pages/Companies").then((m) => ({ default: m.CompanyCard })));

const queryClient = new QueryClient({
  defaultOptions: { queries: { staleTime: 30_000, retry: 1, refetchOnWindowFocus: false } },
});

function Direction() {
  const { i18n } = useTranslation();
  const { setDirection } = useDirection();
  useEffect(() => setDirection(i18n.dir(i18n.language)), [i18n, i18n.language, setDirection]);
  return null;
}

function Private() {
  const { token } = useSession();
  if (!token) return <Navigate to="/login" replace />;
  return (
    <StreamProvider>
      <Layout />
    </StreamProvider>
  );
}

function App() {
  return (
    <Suspense fallback={<Loader m="xl" />}>
      <Routes>
        <Route path="/login" element={<Login />} />
        <Route element={<Private />}>
          <Route path="/contacts" element={<Contacts />} />
          <Route path="/contacts/:contactId" element={<ContactCard />} />
          <Route path="/deals" element={<DealsBoard />} />
          <Route path="/today" element={<Today />} />
          <Route path="/tasks" element={<Tasks />} />
          <Route path="/calls" element={<Calls />} />
          <Route path="/companies" element={<Companies />} />
          <Route path="/companies/:companyId" element={<CompanyCard />} />
          <Route path="/import" element={<Import />} />
          <Route path="/dashboard" element={<Dashboard />} />
          <Route path="/reports" element={<Reports />} />
          <Route path="/settings/access" element={<Access />} />
          <Route path="/settings/pipelines" element={<Pipelines />} />
          <Route path="/settings/notifications" element={<NotificationSettings />} />
          <Route path="/settings/telephony" element={<Telephony />} />
          <Route path="/settings/custom-fields" element={<CustomFieldSettings />} />
          <Route path="/settings/webhooks" element={<Webhooks />} />
          <Route path="/settings/forms" element={<WebForms />} />
          <Route path="/settings/automation" element={<Automation />} />
          <Route path="/settings/mailboxes" element={<MailboxSettings />} />
          <Route path="/settings/templates" element={<Templates />} />
          <Route path="/settings/audit" element={<AuditLog />} />
          <Route path="/settings/dead-letters" element={<DeadLetters />} />
          <Route path="/settings/campaigns" element={<Campaigns />} />
          <Route path="/settings/sales" element={<SalesSettings />} />
          <Route path="/inbox" element={<Inbox />} />
          <Route path="/inbox/:conversationId" element={<Inbox />} />
        </Route>
        <Route path="*" element={<Navigate to="/today" replace />} />
      </Routes>
    </Suspense>
  );
}

ReactDOM.createRoot(document.getElementById("root")!).render(
  <React.StrictMode>
    <DirectionProvider initialDirection={document.documentElement.dir === "rtl" ? "rtl" : "ltr"}>
      <MantineProvider>
        <Direction />
        <Notifications position="top-right" />
        <QueryClientProvider client={queryClient}>
          <BrowserRouter>
            <SessionProvider>
              <App />
            </SessionProvider>
          </BrowserRouter>
        </QueryClientProvider>
      </MantineProvider>
    </DirectionProvider>
  </React.StrictMode>,
);
