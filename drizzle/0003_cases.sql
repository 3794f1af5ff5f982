CREATE TABLE "cases" (
	"case_ref" text PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"identifying_party" text NOT NULL,
	"origin_party" text NOT NULL,
	"minor" boolean NOT NULL,
	"opened_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"awaiting" jsonb NOT NULL,
	"due_at" timestamp with time zone,
	"owing_party" text,
	"reminded_due_at" timestamp with time zone,
	"message_count" integer NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "cases_state_idx" ON "cases" USING btree ("state");--> statement-breakpoint
CREATE INDEX "cases_due_idx" ON "cases" USING btree ("due_at") WHERE due_at is not null;