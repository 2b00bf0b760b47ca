// Builds the dashboard page into florist_grpc/web (what `serve --http-port` serves and the wheel ships):
// index.html and style.css as they are, and app.js, the page's TypeScript bundled with everything it imports
// (clients/typescript's generated code and shared modules, @connectrpc/connect-web, @bufbuild/protobuf). Nothing
// is loaded from anywhere else at run time.
//   node build.mjs           write florist_grpc/web
//   node build.mjs --check   exit 1 if the committed files differ from a fresh build (make lint)
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = join(HERE, "..", "..", "florist_grpc", "web");
const STATIC = ["index.html", "style.css"];
const SHARED_PACKAGES = /^@bufbuild\/protobuf(\/.*)?$|^@connectrpc\/connect$/;

// clients/typescript's modules import @bufbuild/protobuf and @connectrpc/connect too; resolve them from this
// package, so the page holds one copy of each (tsconfig.json's `paths` say the same to tsc).
const oneCopy = {
  name: "one-copy",
  setup(build) {
    build.onResolve({ filter: SHARED_PACKAGES }, (args) => {
      if (args.pluginData === "one-copy") {
        return undefined;
      }
      return build.resolve(args.path, { kind: args.kind, resolveDir: HERE, pluginData: "one-copy" });
    });
  },
};

async function bundle() {
  const result = await esbuild.build({
    entryPoints: [join(HERE, "src", "main.ts")],
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    minify: true,
    legalComments: "none",
    charset: "utf8",
    write: false,
    outfile: join(OUT, "app.js"),
    plugins: [oneCopy],
    logLevel: "warning",
  });
  return result.outputFiles[0].contents;
}

async function build() {
  const files = new Map(STATIC.map((name) => [name, readFileSync(join(HERE, name))]));
  files.set("app.js", Buffer.from(await bundle()));
  return files;
}

const files = await build();
if (process.argv.includes("--check")) {
  const committed = new Set(readdirSync(OUT));
  const stale = [];
  for (const [name, content] of files) {
    let current;
    try {
      current = readFileSync(join(OUT, name));
    } catch {
      current = undefined;
    }
    if (current === undefined || !current.equals(content)) {
      stale.push(name);
    }
    committed.delete(name);
  }
  stale.push(...committed);
  if (stale.length > 0) {
    const where = relative(process.cwd(), OUT);
    const names = stale.map((n) => join(where, n)).join(", ");
    console.error(`the dashboard's built page is stale, run \`make web\`: ${names}`);
    process.exit(1);
  }
  console.log("the dashboard's built page matches clients/web");
} else {
  mkdirSync(OUT, { recursive: true });
  for (const [name, content] of files) {
    writeFileSync(join(OUT, name), content);
  }
}
