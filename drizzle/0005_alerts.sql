CREATE TABLE "alert_watch" (
	"kind" text PRIMARY KEY NOT NULL,
	"watermark" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "alerts" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "alerts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"kind" text NOT NULL,
	"partner" text NOT NULL,
	"since" timestamp with time zone NOT NULL,
	"last_failure_at" timestamp with time zone NOT NULL,
	"count" integer NOT NULL,
	"resolved_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "alerts_active_uq" ON "alerts" USING btree ("kind","partner") WHERE resolved_at is null;--> statement-breakpoint
CREATE INDEX "alerts_partner_idx" ON "alerts" USING btree ("kind","partner","id");--> statement-breakpoint
CREATE INDEX "deliveries_failed_idx" ON "deliveries" USING btree ("updated_at") WHERE status = 'failed';