import { cpSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = dirname(fileURLToPath(import.meta.url));

// Swagger UI (/docs) is swagger-ui-dist from npm: copy its bundle next to our
// docs page (public/docs/) in the build output. The gateway serves dist/ at /.
function swaggerUi(): Plugin {
  return {
    name: "slidelane-swagger-ui",
    apply: "build",
    closeBundle() {
      const source = resolve(here, "node_modules/swagger-ui-dist");
      const target = resolve(here, "dist/docs");
      mkdirSync(target, { recursive: true });
      for (const name of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"]) {
        cpSync(join(source, name), join(target, name));
      }
    },
  };
}

export default defineConfig({
  base: "/",
  plugins: [swaggerUi()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    // `npm run dev`: proxy the API to a running Slidelane (SLIDELANE_URL, default :8000).
    proxy: Object.fromEntries(
      ["/slidelane.v1.", "/api", "/health", "/ui-config.json", "/openapi.json"].map((p) => [
        p,
        { target: process.env.SLIDELANE_URL ?? "http://127.0.0.1:8000", changeOrigin: true },
      ]),
    ),
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
} as Parameters<typeof defineConfig>[0]);
