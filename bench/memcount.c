/* Counts the large memory copies a process makes: bench/copies.py preloads this into a server and a
 * client (LD_PRELOAD) and reads the counts around a run of calls.
 *
 * Every memcpy and memmove of at least MEMCOUNT_MIN bytes (default 4096) that goes through libc's
 * symbols is counted: CPython's bytes/bytearray/memoryview copies, socket buffers joined by asyncio,
 * protobuf's and h2's. Not counted: copies the compiler inlined, the kernel's copies into and out of
 * the socket, and realloc's own moves (glibc grows large blocks with mremap, which moves pages, not
 * bytes).
 *
 * SIGUSR2 zeroes the counts; SIGUSR1 appends "pid calls bytes" to the file MEMCOUNT_OUT, then zeroes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *(*real_memcpy)(void *, const void *, size_t);
static void *(*real_memmove)(void *, const void *, size_t);
static size_t min_size = 4096;
static volatile unsigned long long n_calls, n_bytes;
static int out_fd = -1;

static void on_signal(int sig) {
  if (sig == SIGUSR1 && out_fd >= 0) {
    char line[96];
    int n = snprintf(line, sizeof line, "%d %llu %llu\n", (int)getpid(), n_calls, n_bytes);
    if (n > 0 && write(out_fd, line, (size_t)n) < 0) { /* nothing to do */ }
  }
  n_calls = 0;
  n_bytes = 0;
}

__attribute__((constructor)) static void memcount_init(void) {
  real_memcpy = (void *(*)(void *, const void *, size_t))dlsym(RTLD_NEXT, "memcpy");
  real_memmove = (void *(*)(void *, const void *, size_t))dlsym(RTLD_NEXT, "memmove");
  const char *min = getenv("MEMCOUNT_MIN");
  if (min) min_size = strtoul(min, NULL, 10);
  const char *out = getenv("MEMCOUNT_OUT");
  if (out) out_fd = open(out, O_WRONLY | O_APPEND | O_CREAT, 0644);
  signal(SIGUSR1, on_signal);
  signal(SIGUSR2, on_signal);
}

/* Before the constructor ran (the dynamic loader's own copies), copy byte by byte. */
static void *copy_forward(char *d, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = s[i];
  return d;
}

void *memcpy(void *d, const void *s, size_t n) {
  if (n >= min_size) { n_calls++; n_bytes += n; }
  return real_memcpy ? real_memcpy(d, s, n) : copy_forward(d, s, n);
}

void *memmove(void *d, const void *s, size_t n) {
  if (n >= min_size) { n_calls++; n_bytes += n; }
  if (real_memmove) return real_memmove(d, s, n);
  char *dd = d;
  const char *ss = s;
  if (dd <= ss) return copy_forward(dd, ss, n);
  for (size_t i = n; i-- > 0;) dd[i] = ss[i];
  return d;
}

/* For probes that read the counts in-process (ctypes.CDLL(None)). */
unsigned long long memcount_bytes(void) { return n_bytes; }
unsigned long long memcount_calls(void) { return n_calls; }
