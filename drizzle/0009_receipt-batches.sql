CREATE TABLE "receipt_batches" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "receipt_batches_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid NOT NULL,
	"direction" text NOT NULL,
	"from_party" text NOT NULL,
	"to_party" text NOT NULL,
	"entries" integer NOT NULL,
	"jws" text NOT NULL,
	"digest" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	"publish_attempts" integer DEFAULT 0 NOT NULL,
	"next_publish_at" timestamp with time zone DEFAULT now() NOT NULL,
	"superseded_by" uuid
);
--> statement-breakpoint
DROP INDEX "receipts_unpublished_idx";--> statement-breakpoint
ALTER TABLE "receipts" ALTER COLUMN "jws" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "receipts" ALTER COLUMN "digest" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "parties" ADD COLUMN "receipt_batches" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "receipts" ADD COLUMN "batch_id" uuid;--> statement-breakpoint
CREATE UNIQUE INDEX "receipt_batches_direction_id_uq" ON "receipt_batches" USING btree ("direction","id");--> statement-breakpoint
CREATE INDEX "receipt_batches_unpublished_idx" ON "receipt_batches" USING btree ("next_publish_at") WHERE direction = 'issued' and published_at is null;--> statement-breakpoint
CREATE INDEX "receipts_unpublished_idx" ON "receipts" USING btree ("next_publish_at") WHERE direction = 'issued' and published_at is null and batch_id is null;