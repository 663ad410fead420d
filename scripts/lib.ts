export { createLogger, provisionAll } from "@nexus/runtime";
