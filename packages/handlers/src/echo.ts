import { defineHandler } from "./handler.ts";

/** `echo.test`: returns its params unchanged, `{ echo: params }` — a diagnostic for smoke tests. */
export const echoHandler = defineHandler("echo.test", async (params) => ({ echo: params }));
