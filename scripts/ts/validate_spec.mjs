// react-native-executorch's own load-time check of a semantic-segmentation model, run in Node.
//
//   node validate_spec.mjs --rne 0.10.2 < request.json
//
// request.json: {"spec": ModelSpec<ConcreteDim>, "labels": <count>}, the spec as the package's
// native loader builds it from the program's MethodMeta (src/core/schema.ts): e.g.
//   {"forward": {"inputs": [{"kind": "Tensor", "dtype": "float32",
//                            "shape": [{"kind": "constant", "value": 1}, ...]}],
//                "outputs": [...], "runtimeConstraints": []}}
//
// It runs the package's compiled createSemanticSegmenter (lib/module/extensions/cv/tasks/
// semanticSegmentation.js) on a stand-in for the native JSI whose loadModel returns a model with
// that spec: the task's own validateSpec call (core/schema.js, its allowed batched/unbatched
// specs) and its labels-vs-classes check run unchanged. The first native tensor allocation, which
// comes right after both, ends the run: the model passed.
// Prints one JSON line: {"ok": true, "output": [1, K, H, W]} or {"ok": false, "code", "message"};
// exit 0 when it passes, 1 when the package refuses it, 2 on a usage error.
import { register } from 'node:module';
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const rne = args[args.indexOf('--rne') + 1];
if (args.indexOf('--rne') < 0 || !rne) {
  console.error('usage: node validate_spec.mjs --rne <version installed as rne-<version>> < request.json');
  process.exit(2);
}
const lib = new URL(`./node_modules/rne-${rne}/lib/module/`, import.meta.url);
let request;
try {
  request = JSON.parse(readFileSync(0, 'utf8'));
} catch (e) {
  console.error(`request is not JSON: ${e.message}`);
  process.exit(2);
}

const PASSED = Symbol('validated');
let allocated = null;
globalThis.__rnexecutorch_jsi__ = {
  loadModel: () => ({ schema: request.spec, dispose: () => {} }),
  createTensor: (shape) => {
    allocated = shape; // the task's first tensor: its output buffer, shaped by the matched spec
    throw PASSED;
  },
};
register('./shims/loader.mjs', import.meta.url);

let task;
try {
  task = await import(new URL('extensions/cv/tasks/semanticSegmentation.js', lib));
} catch (e) {
  console.error(`cannot load react-native-executorch ${rne} (scripts/ts/node_modules/rne-${rne}): ${e.message}`);
  process.exit(2);
}
const labels = Array.from({ length: request.labels }, (_, i) => `label${i}`);
const config = {
  modelPath: 'model.pte',
  modelOpts: { labels, resizeMode: 'stretch', interpolation: 'linear', normalizeOpts: {}, outInterpolation: 'nearest' },
};
try {
  await task.createSemanticSegmenter(config);
  console.log(JSON.stringify({ ok: false, code: 'UNKNOWN', message: 'the task allocated no tensor' }));
  process.exit(1);
} catch (e) {
  if (e === PASSED) {
    console.log(JSON.stringify({ ok: true, output: allocated }));
    process.exit(0);
  }
  console.log(JSON.stringify({ ok: false, code: e.code ?? 'UNKNOWN', message: e.message ?? String(e) }));
  process.exit(1);
}
