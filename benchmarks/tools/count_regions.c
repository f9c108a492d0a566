/* Counts OpenMP parallel regions: an LD_PRELOAD shim over libgomp's GOMP_parallel (the entry of every
 * "#pragma omp parallel" in ATen and of MKL's GNU threading layer), forwarding each call to the
 * libgomp that torch loaded. benchmarks/profile_step.py --regions builds and preloads it:
 *     gcc -O2 -shared -fPIC -o count_regions.so count_regions.c -ldl
 * and reads the count through ctypes (recgoat_parallel_regions). A development tool; nothing in
 * the package needs it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <stdio.h>

typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_fn real_parallel;
static unsigned long long regions;

static int find_gomp(struct dl_phdr_info *info, size_t size, void *out) {
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "libgomp")) {
        void *h = dlopen(info->dlpi_name, RTLD_NOLOAD | RTLD_LAZY);
        if (h) { *(void **)out = dlsym(h, "GOMP_parallel"); return *(void **)out != NULL; }
    }
    return 0;
}

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    if (!real_parallel) {
        void *p = NULL;
        dl_iterate_phdr(find_gomp, &p);
        real_parallel = (gomp_parallel_fn)p;
    }
    __atomic_fetch_add(&regions, 1, __ATOMIC_RELAXED);
    real_parallel(fn, data, num_threads, flags);
}

unsigned long long recgoat_parallel_regions(void) { return regions; }
