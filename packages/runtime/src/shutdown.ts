import closeWithGrace from "close-with-grace";
import type { Logger } from "pino";

/**
 * Installs the one bounded shutdown function of a service: on SIGINT/SIGTERM (or an uncaught
 * error) it runs `close` once, and exits after at most `graceMs` even if `close` hangs.
 */
export function onShutdown(logger: Logger, graceMs: number, close: () => Promise<void>): void {
  closeWithGrace({ delay: graceMs + 2000 }, async ({ signal, err }) => {
    if (err) logger.error({ err }, "shutdown:error");
    logger.info({ signal }, "shutdown:start");
    await close();
    logger.info("shutdown:done");
  });
}
