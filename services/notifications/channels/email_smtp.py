"""Email over SMTP (plain, STARTTLS or implicit TLS), text with an HTML alternative."""
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import make_msgid


def send(delivery, settings, http):
    from services.notifications.channels import Permanent, Retryable
    to = delivery.get("target")
    if not to or "@" not in to:
        raise Permanent(f"no usable email address: {to!r}")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = delivery["subject"]
    msg["Message-ID"] = make_msgid(domain="crm")
    # lets the receiving side drop a duplicate if a lease expiry ever resends it
    msg["X-CRM-Delivery"] = delivery["_id"]
    msg.set_content(delivery["text"])
    if delivery.get("html"):
        msg.add_alternative(delivery["html"], subtype="html")
    try:
        if settings.smtp_tls == "ssl":
            client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                      timeout=settings.send_timeout_s,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                                  timeout=settings.send_timeout_s)
        with client:
            if settings.smtp_tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                client.login(settings.smtp_user, settings.smtp_password)
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        text = f"recipient refused: {exc.recipients}"
        raise (Retryable if all(400 <= c < 500 for c in codes) else Permanent)(text)
    except smtplib.SMTPResponseException as exc:
        text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        # 4yz are transient by definition in SMTP, 5yz permanent
        raise (Permanent if 500 <= exc.smtp_code < 600 else Retryable)(text)
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        raise Retryable(f"SMTP unavailable: {exc}")
    return f"sent to {to}"
