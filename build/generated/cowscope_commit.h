#define COWSCOPE_COMMIT "unknown"
