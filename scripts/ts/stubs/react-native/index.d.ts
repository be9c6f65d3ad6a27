// Minimal stand-in for react-native's Platform type, enough to type-check generated constants.
declare module 'react-native' {
  export const Platform: {
    OS: 'ios' | 'android' | 'macos' | 'windows' | 'web';
  };
}
