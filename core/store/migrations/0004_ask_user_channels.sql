-- Where an ask_user question went on Telegram, so a reply can be matched to it.
ALTER TABLE ask_user_requests ADD COLUMN telegram_chat_id bigint;
ALTER TABLE ask_user_requests ADD COLUMN telegram_message_id bigint;
CREATE INDEX ask_user_telegram ON ask_user_requests (telegram_chat_id, telegram_message_id)
    WHERE telegram_message_id IS NOT NULL;
