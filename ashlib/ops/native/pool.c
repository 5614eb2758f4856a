/* A cache of the large blocks that ashlib's CPU operators return as outputs (y, dL/dx).
 *
 * Why: glibc hands a freed block of many megabytes back to the system whenever it lies at the
 * top of the heap (or was mmapped), and the next allocation of that size page-faults it in again,
 * 4 kB at a time: on a 16 MiB output that is 4096 faults, several milliseconds, more than the
 * arithmetic. Whether a process falls into that pattern depends on the order of every allocation
 * before it, so the same model can run at half speed in one process and at full speed in the
 * next. Blocks from this cache are mapped once, given back here when the tensor that owns them
 * is freed, and handed out again to the next request of the same size, with their pages still
 * mapped.
 *
 * Blocks come from mmap (never from malloc, so that glibc's heap is left alone), their size
 * rounded up to POOL_GRAIN; a request takes a free block of its size, or one up to a quarter
 * larger. Free blocks are kept up to a limit in bytes (ashlib_pool_set_limit;
 * 0 turns the cache off: every block is unmapped when given back); beyond it, the blocks freed
 * longest ago are unmapped first. Every function is thread-safe; a forked child starts with a
 * consistent copy of the parent's free blocks (the mutex is held across the fork). */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define POOL_GRAIN ((size_t)1 << 16) /* 64 kB */

typedef struct {
    void *p;
    size_t size;
} pool_block;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pool_block *pool_free = NULL; /* free blocks, oldest first */
static size_t pool_count = 0, pool_cap = 0, pool_bytes = 0;
static size_t pool_limit = (size_t)1 << 30;

/* fork: the mutex is held across it, so that the child's copy of the list is never caught half
 * updated by another thread; the child, which has only the forking thread, starts it afresh */
static void pool_prepare(void) { pthread_mutex_lock(&pool_mu); }
static void pool_parent(void) { pthread_mutex_unlock(&pool_mu); }
static void pool_child(void) { pthread_mutex_init(&pool_mu, NULL); }
static void pool_init(void) { pthread_atfork(pool_prepare, pool_parent, pool_child); }

/* the size a request of `bytes` gets (the unit of reuse) */
size_t ashlib_pool_size(size_t bytes) { return (bytes + POOL_GRAIN - 1) & ~(POOL_GRAIN - 1); }

/* A block of at least `bytes` bytes, its size into *size_out (give it back with that size): the
 * most recently freed block of size ashlib_pool_size(bytes), else the smallest free one up to a
 * quarter larger (so that a smaller last batch reuses the blocks of the full ones), else a new
 * mapping of ashlib_pool_size(bytes). NULL when the system has no memory for it. */
void *ashlib_pool_get(size_t bytes, size_t *size_out) {
    const size_t size = ashlib_pool_size(bytes), most = size + size / 4;
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_mu);
    size_t best = pool_count;
    for (size_t i = pool_count; i-- > 0;) {
        const size_t s = pool_free[i].size;
        if (s >= size && s <= most && (best == pool_count || s < pool_free[best].size)) {
            best = i;
            if (s == size) break;
        }
    }
    if (best < pool_count) {
        void *p = pool_free[best].p;
        *size_out = pool_free[best].size;
        pool_bytes -= pool_free[best].size;
        for (size_t j = best + 1; j < pool_count; ++j) pool_free[j - 1] = pool_free[j];
        --pool_count;
        pthread_mutex_unlock(&pool_mu);
        return p;
    }
    pthread_mutex_unlock(&pool_mu);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *size_out = size;
    return p == MAP_FAILED ? NULL : p;
}

/* Unmap free blocks, oldest first, until at most `keep` bytes are cached; called with the mutex
 * held, it unmaps after unlocking. Returns the bytes unmapped. */
static size_t pool_shrink_unlock(size_t keep) {
    size_t n = 0, freed = 0;
    while (n < pool_count && pool_bytes > keep) {
        pool_bytes -= pool_free[n].size;
        ++n;
    }
    pool_block *gone = NULL;
    if (n) {
        gone = (pool_block *)malloc(n * sizeof(pool_block));
        if (gone) {
            for (size_t j = 0; j < n; ++j) gone[j] = pool_free[j];
        } else { /* no memory for the list: unmap under the lock */
            for (size_t j = 0; j < n; ++j) munmap(pool_free[j].p, pool_free[j].size);
        }
        for (size_t j = n; j < pool_count; ++j) pool_free[j - n] = pool_free[j];
        pool_count -= n;
    }
    pthread_mutex_unlock(&pool_mu);
    if (gone) {
        for (size_t j = 0; j < n; ++j) {
            freed += gone[j].size;
            munmap(gone[j].p, gone[j].size);
        }
        free(gone);
    }
    return freed;
}

/* Give back a block that ashlib_pool_get returned, with the size it gave. */
void ashlib_pool_put(void *p, size_t size) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_mu);
    if (size > pool_limit) {
        pthread_mutex_unlock(&pool_mu);
        munmap(p, size);
        return;
    }
    if (pool_count == pool_cap) {
        size_t cap = pool_cap ? 2 * pool_cap : 16;
        pool_block *grown = (pool_block *)realloc(pool_free, cap * sizeof(pool_block));
        if (!grown) {
            pthread_mutex_unlock(&pool_mu);
            munmap(p, size);
            return;
        }
        pool_free = grown;
        pool_cap = cap;
    }
    pool_free[pool_count].p = p;
    pool_free[pool_count].size = size;
    ++pool_count;
    pool_bytes += size;
    pool_shrink_unlock(pool_limit);
}

/* Set the most bytes kept in free blocks (0: keep none) and unmap what is beyond it; returns the
 * bytes unmapped. */
size_t ashlib_pool_set_limit(size_t limit) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_mu);
    pool_limit = limit;
    return pool_shrink_unlock(limit);
}

/* Unmap every free block (the limit stays); returns the bytes unmapped. */
size_t ashlib_pool_release(void) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_mu);
    return pool_shrink_unlock(0);
}

/* Bytes held in free blocks now. */
size_t ashlib_pool_cached(void) {
    pthread_mutex_lock(&pool_mu);
    size_t b = pool_bytes;
    pthread_mutex_unlock(&pool_mu);
    return b;
}
