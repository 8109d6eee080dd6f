#define COWSCOPE_COMMIT "b4fdc1abfe42-dirty"
