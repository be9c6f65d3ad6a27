// Resolves the react-native packages react-native-executorch's compiled lib/ imports to Node stand-ins.
const SHIMS = { 'react-native-worklets': new URL('./react-native-worklets.mjs', import.meta.url).href };

export async function resolve(specifier, context, next) {
  if (specifier in SHIMS) return { url: SHIMS[specifier], shortCircuit: true };
  return next(specifier, context);
}
