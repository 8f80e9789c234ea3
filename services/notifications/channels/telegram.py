"""Telegram through the Bot API sendMessage (base URL configurable, chat id per user)."""


def send(delivery, settings, http):
    from services.notifications.channels import Permanent, post
    if not settings.telegram_token:
        raise Permanent("no Telegram bot configured (CRM_TELEGRAM_TOKEN)")
    chat_id = delivery.get("target")
    if not chat_id:
        raise Permanent("user has no telegram_chat_id")
    url = f"{settings.telegram_base}/bot{settings.telegram_token}/sendMessage"
    return post(http, url, "Telegram", settings.send_timeout_s,
                json={"chat_id": chat_id, "text": delivery["text"],
                      "disable_web_page_preview": True})
