CREATE TABLE "deliveries" (
	"message_id" uuid NOT NULL,
	"recipient" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_error" text,
	"receipt_id" uuid,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "deliveries_message_id_recipient_pk" PRIMARY KEY("message_id","recipient")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "messages_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"direction" text NOT NULL,
	"type" text NOT NULL,
	"schema_version" integer NOT NULL,
	"from_party" text NOT NULL,
	"to_parties" jsonb NOT NULL,
	"case_ref" text NOT NULL,
	"in_reply_to" uuid,
	"sent_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"classification" text NOT NULL,
	"kid" text NOT NULL,
	"jws" text NOT NULL,
	"digest" text NOT NULL,
	"logged_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "parties" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"country" text NOT NULL,
	"kind" text NOT NULL,
	"inbound_subject" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "party_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"party_id" text NOT NULL,
	"alg" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"valid_from" timestamp with time zone NOT NULL,
	"valid_until" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "quarantine" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "quarantine_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"subject" text NOT NULL,
	"raw" "bytea" NOT NULL,
	"digest" text NOT NULL,
	"code" text NOT NULL,
	"detail" text NOT NULL,
	"issues" jsonb NOT NULL,
	"kind" text NOT NULL,
	"claimed_from" text,
	"message_id" text,
	"receipt_id" uuid
);
--> statement-breakpoint
CREATE TABLE "receipts" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "receipts_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"direction" text NOT NULL,
	"message_id" uuid,
	"message_digest" text NOT NULL,
	"from_party" text NOT NULL,
	"to_party" text NOT NULL,
	"status" text NOT NULL,
	"errors" jsonb NOT NULL,
	"jws" text NOT NULL,
	"digest" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	"publish_attempts" integer DEFAULT 0 NOT NULL,
	"next_publish_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "deliveries" ADD CONSTRAINT "deliveries_recipient_parties_id_fk" FOREIGN KEY ("recipient") REFERENCES "public"."parties"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "party_keys" ADD CONSTRAINT "party_keys_party_id_parties_id_fk" FOREIGN KEY ("party_id") REFERENCES "public"."parties"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "deliveries_due_idx" ON "deliveries" USING btree ("next_attempt_at") WHERE status in ('queued', 'sent');--> statement-breakpoint
CREATE UNIQUE INDEX "messages_direction_id_uq" ON "messages" USING btree ("direction","id");--> statement-breakpoint
CREATE INDEX "messages_case_idx" ON "messages" USING btree ("case_ref");--> statement-breakpoint
CREATE INDEX "party_keys_party_idx" ON "party_keys" USING btree ("party_id");--> statement-breakpoint
CREATE INDEX "quarantine_code_idx" ON "quarantine" USING btree ("code");--> statement-breakpoint
CREATE UNIQUE INDEX "receipts_direction_id_uq" ON "receipts" USING btree ("direction","id");--> statement-breakpoint
CREATE INDEX "receipts_message_idx" ON "receipts" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "receipts_unpublished_idx" ON "receipts" USING btree ("next_publish_at") WHERE direction = 'issued' and published_at is null;