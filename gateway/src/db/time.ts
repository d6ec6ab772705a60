// Timestamps in the database are whole seconds since the epoch.
export const nowSeconds = () => Math.floor(Date.now() / 1000);
