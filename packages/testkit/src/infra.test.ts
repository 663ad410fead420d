/**
 * `spawnNatsServer`: the server's port is the kernel's choice, read from nats-server's own
 * ports file, and a server that cannot bind fails the spawn. Before, the port was probed and
 * handed over, and readiness was "something accepts connections there": with the port taken by
 * another process in between, the spawn returned that process's address while its own server
 * had exited.
 */
import net from "node:net";
import { expect, it } from "vitest";
import { hasNatsBinary, spawnNatsServer } from "./infra.ts";

const binary = hasNatsBinary();

it.skipIf(!binary)("a server without a given port gets one of its own, and its URL reaches it", async () => {
  const [a, b] = await Promise.all([spawnNatsServer(), spawnNatsServer()]);
  try {
    expect(a.port).not.toBe(b.port);
    // The INFO line a server sends first names its own port.
    const info = await new Promise<{ port: number }>((resolve, reject) => {
      const sock = net.connect(a.port, "127.0.0.1");
      sock.once("data", (d) => {
        sock.destroy();
        const line = d.toString().split("\r\n")[0] ?? "";
        resolve(JSON.parse(line.replace(/^INFO /, "")) as { port: number });
      });
      sock.once("error", reject);
    });
    expect(info.port).toBe(a.port);
  } finally {
    await a.stop();
    await b.stop();
  }
});

it.skipIf(!binary)("a port another process holds fails the spawn instead of returning that process", async () => {
  const squatter = net.createServer((s) => s.end());
  await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
  try {
    const port = (squatter.address() as net.AddressInfo).port;
    await expect(spawnNatsServer({ port })).rejects.toThrow(/nats-server exited/);
  } finally {
    await new Promise((r) => squatter.close(r));
  }
});
