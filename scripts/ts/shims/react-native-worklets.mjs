// Node stand-in for react-native-worklets, enough for validate_spec.mjs: the task's wrapAsync runs
// its function on the calling thread.
export const createWorkletRuntime = () => ({});
export const runOnRuntimeAsync = async (_runtime, fn, args) => fn(args);
