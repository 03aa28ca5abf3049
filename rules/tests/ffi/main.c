#include <stdint.h>
#include <stdio.h>

uint32_t ferrule_add(uint32_t a, uint32_t b);

int main(void) {
    uint32_t got = ferrule_add(40, 2);
    if (got != 42) {
        fprintf(stderr, "ferrule_add(40, 2) = %u\n", got);
        return 1;
    }
    printf("ok\n");
    return 0;
}
