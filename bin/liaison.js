#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: no build step to forget.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/liaison.ts");
await main(process.argv.slice(2));
