ALTER TABLE "messages" ADD COLUMN "idempotency_key" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "request_digest" text;--> statement-breakpoint
CREATE UNIQUE INDEX "messages_outbound_idempotency_key_uq" ON "messages" USING btree ("idempotency_key") WHERE direction = 'outbound' and idempotency_key is not null;