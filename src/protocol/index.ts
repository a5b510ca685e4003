export * from './close-codes.js';
export * from './errors.js';
export * from './http.js';
export * from './messages.js';
