"""A quote or invoice e-mailed to the client with its PDF, through the platform's SMTP
settings (the notifications section: CRM_SMTP_*), until the conversations service sends
mail. Sent before the document's status changes: a refused send changes nothing."""
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from crm_common.errors import Unavailable, ValidationFailed


def send_document(smtp, to, subject, text, pdf_bytes, filename):
    msg = EmailMessage()
    msg["From"] = smtp.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="crm")
    msg.set_content(text)
    msg.add_attachment(pdf_bytes, maintype="application", subtype="pdf", filename=filename)
    try:
        if smtp.smtp_tls == "ssl":
            client = smtplib.SMTP_SSL(smtp.smtp_host, smtp.smtp_port, timeout=smtp.send_timeout_s,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.smtp_host, smtp.smtp_port, timeout=smtp.send_timeout_s)
        with client:
            if smtp.smtp_tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.smtp_user:
                client.login(smtp.smtp_user, smtp.smtp_password)
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ValidationFailed("The mail server refused the address",
                               {"fields": {"to": [str(list(exc.recipients.values()))]}})
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        raise Unavailable("The mail server is unavailable", {"reason": str(exc)[:200]})
