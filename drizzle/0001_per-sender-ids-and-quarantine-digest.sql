DROP INDEX "messages_direction_id_uq";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_direction_from_id_uq" ON "messages" USING btree ("direction","from_party","id");--> statement-breakpoint
CREATE INDEX "messages_id_idx" ON "messages" USING btree ("id");--> statement-breakpoint
-- Earlier versions kept one row per redelivery of the same bytes: keep the first of each.
DELETE FROM "quarantine" q USING "quarantine" o WHERE q."digest" = o."digest" AND q."seq" > o."seq";--> statement-breakpoint
CREATE UNIQUE INDEX "quarantine_digest_uq" ON "quarantine" USING btree ("digest");