/**
 * Series colours, shared by the charts and their HTML legends. Chosen to stay apart
 * for the common forms of colour blindness (blue / orange, green / red differ in lightness too).
 */
export const palette = {
  requests: '#2563eb',
  tokens: '#ea8a0c',
  p50: '#0f9f6e',
  p99: '#c2410c',
  adapterBars: '#6366f1',
  grid: '#e5e7eb',
  axisText: '#6b7280',
} as const;
