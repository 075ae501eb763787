// Generate the browser's API client (messages + service descriptors) from protos/.
//
//   node scripts/gen-api.mjs        (npm run gen; `npm run build` runs it first)
//
// The public protos import google/api/{annotations,http,httpbody}.proto, which the
// Python side takes from the googleapis-common-protos wheel; errors carry
// google.rpc.BadRequest (google/rpc/error_details.proto) in grpc-status-details-bin. We stage protos/slidelane
// and those files into .proto-stage/ and run `buf generate` (buf pinned in
// package-lock; $BUF overrides it) with the local protoc-gen-es plugin.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ui = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repo = resolve(ui, "../../..");
const stage = join(ui, ".proto-stage");

// The folder holding google/api/*.proto and google/rpc/error_details.proto.
function googleapisDir() {
  const candidates = [join(repo, "build/proto-deps")];
  const pythons = [process.env.PYTHON, join(repo, ".venv/bin/python"), "python3"].filter(Boolean);
  for (const python of pythons) {
    try {
      const out = execFileSync(
        python,
        ["-c", "import google.api, pathlib; print(pathlib.Path(list(google.api.__path__)[0]).parent.parent)"],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      ).trim();
      candidates.push(out);
      break;
    } catch {
      // try the next interpreter
    }
  }
  for (const dir of candidates) {
    const needed = ["google/api/annotations.proto", "google/api/httpbody.proto", "google/rpc/error_details.proto"];
    if (needed.every((name) => existsSync(join(dir, name)))) return dir;
  }
  throw new Error(
    "googleapis protos (google/api, google/rpc) not found: install the project's Python environment (googleapis-common-protos) " +
      "or run `make lint-proto` so build/proto-deps exists",
  );
}

rmSync(stage, { recursive: true, force: true });
cpSync(join(repo, "protos/slidelane/v1"), join(stage, "slidelane/v1"), { recursive: true });
const googleapis = googleapisDir();
for (const sub of ["google/api", "google/rpc"]) {
  mkdirSync(join(stage, sub), { recursive: true });
  for (const name of readdirSync(join(googleapis, sub))) {
    if (name.endsWith(".proto")) cpSync(join(googleapis, sub, name), join(stage, sub, name));
  }
}

const localBuf = join(ui, "node_modules/.bin/buf");
const buf = process.env.BUF || (existsSync(localBuf) ? localBuf : join(repo, ".venv/bin/buf"));
execFileSync(buf, ["generate", "--template", "buf.gen.yaml"], { cwd: ui, stdio: "inherit" });
rmSync(stage, { recursive: true, force: true });
console.log("gen-api: src/gen written from protos/slidelane/v1");
