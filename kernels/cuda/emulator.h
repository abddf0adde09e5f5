// theanine's CUDA emulator: makes CUDA C compile with g++ and run on the CPU, for tests.
//
// Blocks run one after another on the calling OS thread. The threads of a block are cooperative
// fibers (a small x86-64 context switch) that switch only at __syncthreads and at the warp
// primitives, in forward, reverse or shuffled order. __shared__ variables live in the section
// `emu_shared`, poisoned with 0xFF bytes (NaN for floats) before every block. Errors (divergent or
// deadlocked barriers, a thread exiting while others wait, assert, __trap) stop the launch and
// come back to Python as a message; out-of-bounds writes are caught by the guarded buffers of
// device.py. Limits: warps are not lockstep, x86 memory ordering hides missing fences, races
// between blocks cannot show (blocks never overlap).
#pragma once
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ __attribute__((section("emu_shared"))) static
#define __constant__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};

static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;

extern "C" __attribute__((visibility("hidden"))) char __start_emu_shared[];
extern "C" __attribute__((visibility("hidden"))) char __stop_emu_shared[];
// Makes the section exist even when no kernel declares shared memory.
__attribute__((section("emu_shared"), used)) static char emu_shared_anchor[8];

namespace emu {

enum State { READY, WAIT_BLOCK, WAIT_WARP, DONE };
const int MAX_THREADS = 1024;
const size_t STACK_BYTES = 128 * 1024;  // per fiber; the lowest page is a guard (overflow faults)

struct Fiber {
  void* sp;
  int state;
  int line;
  uint3 tid;
};

struct Context {
  Fiber fibers[MAX_THREADS];
  int order[MAX_THREADS];
  uint64_t lane_value[MAX_THREADS];  // what each lane offers to a warp primitive
  char* stacks = nullptr;
  void* scheduler_sp = nullptr;
  int current = 0;
  int n_threads = 0;
  void (*body)(void**) = nullptr;
  void** args = nullptr;
  bool failed = false;
  char message[2048];
};

static Context ctx;

extern "C" void emu_switch(void** save_sp, void* load_sp);
// Save the callee-saved registers on the current stack, store the stack pointer, load the other
// fiber's stack pointer and pop its registers: `ret` then resumes that fiber (or starts it).
asm(".text\n"
    ".p2align 4\n"
    ".local emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");

static void fail(const char* format, ...) {
  if (ctx.failed) return;
  ctx.failed = true;
  va_list ap;
  va_start(ap, format);
  vsnprintf(ctx.message, sizeof ctx.message, format, ap);
  va_end(ap);
}

static void yield_to_scheduler() {
  Fiber& f = ctx.fibers[ctx.current];
  emu_switch(&f.sp, ctx.scheduler_sp);
}

// A failing thread stops here: the scheduler never resumes it and ends the launch.
static void abort_thread() {
  ctx.fibers[ctx.current].state = DONE;
  yield_to_scheduler();
}

static void fiber_entry() {
  ctx.body(ctx.args);
  ctx.fibers[ctx.current].state = DONE;
  yield_to_scheduler();
  __builtin_unreachable();
}

static void prepare(int i) {
  char* top = ctx.stacks + (size_t)(i + 1) * STACK_BYTES;  // 16-byte aligned (mmap)
  void** sp = (void**)top;
  *--sp = nullptr;                     // fake return address of fiber_entry: entry rsp % 16 == 8
  *--sp = (void*)&fiber_entry;         // where the first `ret` goes
  for (int r = 0; r < 6; r++) *--sp = nullptr;  // the six callee-saved registers
  ctx.fibers[i].sp = sp;
}

static void barrier(int kind, int line) {
  Fiber& f = ctx.fibers[ctx.current];
  f.state = kind;
  f.line = line;
  yield_to_scheduler();
  threadIdx = ctx.fibers[ctx.current].tid;
}

static const char* thread_text(int i, char* buffer) {
  uint3 t = ctx.fibers[i].tid;
  snprintf(buffer, 64, "thread (%u,%u,%u) of block (%u,%u,%u)", t.x, t.y, t.z, blockIdx.x,
           blockIdx.y, blockIdx.z);
  return buffer;
}

// Release the threads waiting at barriers that every live participant has reached; false on a
// deadlock, a divergent barrier or a thread that exited while others wait (all reported).
static bool release() {
  int n = ctx.n_threads;
  bool released = false;
  char a[64], b[64];
  for (int w = 0; w < n; w += 32) {
    int end = w + 32 < n ? w + 32 : n, first = -1;
    bool all = true;
    for (int i = w; i < end; i++) {
      Fiber& f = ctx.fibers[i];
      if (f.state == DONE) continue;
      if (f.state != WAIT_WARP) { all = false; break; }
      if (first < 0) first = i;
      else if (f.line != ctx.fibers[first].line) {
        fail("divergent warp primitives: %s waits at line %d, %s at line %d", thread_text(first, a),
             ctx.fibers[first].line, thread_text(i, b), f.line);
        return false;
      }
    }
    if (all && first >= 0) {
      for (int i = w; i < end; i++)
        if (ctx.fibers[i].state == WAIT_WARP) ctx.fibers[i].state = READY;
      released = true;
    }
  }
  int first = -1, done = -1;
  bool all = true;
  for (int i = 0; i < n; i++) {
    Fiber& f = ctx.fibers[i];
    if (f.state == DONE) { done = i; continue; }
    if (f.state != WAIT_BLOCK) { all = false; continue; }
    if (first < 0) first = i;
    else if (f.line != ctx.fibers[first].line) {
      fail("divergent __syncthreads: %s waits at line %d, %s at line %d", thread_text(first, a),
           ctx.fibers[first].line, thread_text(i, b), f.line);
      return false;
    }
  }
  if (all && first >= 0) {
    if (done >= 0) {
      fail("%s exited while %s waits at __syncthreads (line %d)", thread_text(done, a),
           thread_text(first, b), ctx.fibers[first].line);
      return false;
    }
    for (int i = 0; i < n; i++) ctx.fibers[i].state = READY;
    released = true;
  }
  if (!released) {
    for (int i = 0; i < n; i++) {
      if (ctx.fibers[i].state != DONE) {
        fail("deadlock: %s waits at line %d and nothing can release it", thread_text(i, a),
             ctx.fibers[i].line);
        return false;
      }
    }
  }
  return true;
}

static uint64_t rng_state = 1;
static uint64_t next_random() {  // splitmix64: a reproducible shuffle for a seed
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int run_block(int order) {
  int n = ctx.n_threads;
  memset(__start_emu_shared, 0xFF, __stop_emu_shared - __start_emu_shared);
  for (int i = 0; i < n; i++) {
    ctx.fibers[i].state = READY;
    ctx.fibers[i].line = 0;
    prepare(i);
  }
  while (true) {
    for (int i = 0; i < n; i++) ctx.order[i] = order == 1 ? n - 1 - i : i;
    if (order == 2) {
      for (int i = n - 1; i > 0; i--) {
        int j = (int)(next_random() % (uint64_t)(i + 1));
        int t = ctx.order[i];
        ctx.order[i] = ctx.order[j];
        ctx.order[j] = t;
      }
    }
    for (int k = 0; k < n; k++) {
      int i = ctx.order[k];
      if (ctx.fibers[i].state != READY) continue;
      ctx.current = i;
      threadIdx = ctx.fibers[i].tid;
      emu_switch(&ctx.scheduler_sp, ctx.fibers[i].sp);
      if (ctx.failed) return 1;
    }
    bool live = false;
    for (int i = 0; i < n && !live; i++) live = ctx.fibers[i].state != DONE;
    if (!live) return 0;
    if (!release()) return 1;
  }
}

}  // namespace emu

namespace emu {
// A wild access faults: the handler reports which thread and address, then jumps back to the
// launch instead of killing Python. It runs on its own stack, so a fiber's stack overflow works.
static sigjmp_buf fault_return;
static char fault_stack[64 * 1024];

static void on_fault(int signal, siginfo_t* info, void*) {
  char a[64];
  fail("%s: %s touched address %p (out of bounds or a bad pointer)",
       signal == SIGSEGV ? "segmentation fault" : "bus error", thread_text(ctx.current, a),
       info->si_addr);
  siglongjmp(fault_return, 1);
}

static int run_grid(int order) {
  for (unsigned z = 0; z < gridDim.z; z++)
    for (unsigned y = 0; y < gridDim.y; y++)
      for (unsigned x = 0; x < gridDim.x; x++) {
        blockIdx = {x, y, z};
        if (run_block(order)) return 1;
      }
  return 0;
}
}  // namespace emu

extern "C" int emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, int order, unsigned long long seed, void (*body)(void**),
                          void** args) {
  using namespace emu;
  ctx.failed = false;
  ctx.message[0] = 0;
  unsigned long long n = (unsigned long long)bx * by * bz;
  if (n == 0 || n > (unsigned long long)MAX_THREADS) {
    fail("block of %u x %u x %u threads: expected 1 to %d threads", bx, by, bz, MAX_THREADS);
    return 1;
  }
  if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535) {
    fail("grid of %u x %u x %u blocks is not a valid CUDA grid", gx, gy, gz);
    return 1;
  }
  if (ctx.stacks == nullptr) {
    fail("no fiber stacks: call emu_use_stacks first");
    return 1;
  }
  rng_state = seed;
  ctx.n_threads = (int)n;
  ctx.body = body;
  ctx.args = args;
  blockDim = {bx, by, bz};
  gridDim = {gx, gy, gz};
  int i = 0;
  for (unsigned z = 0; z < bz; z++)
    for (unsigned y = 0; y < by; y++)
      for (unsigned x = 0; x < bx; x++) ctx.fibers[i++].tid = {x, y, z};
  stack_t alternate = {}, previous_stack;
  alternate.ss_sp = fault_stack;
  alternate.ss_size = sizeof fault_stack;
  sigaltstack(&alternate, &previous_stack);
  struct sigaction action = {}, previous_segv, previous_bus;
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &previous_segv);
  sigaction(SIGBUS, &action, &previous_bus);
  int status = sigsetjmp(fault_return, 1) ? 1 : run_grid(order);
  sigaction(SIGSEGV, &previous_segv, nullptr);  // Python's own handlers (faulthandler) return
  sigaction(SIGBUS, &previous_bus, nullptr);
  sigaltstack(&previous_stack, nullptr);
  return status;
}

extern "C" const char* emu_last_error() { return emu::ctx.message; }

// Fiber stacks for every module of the process (one launch runs at a time): mapped once, with
// a guard page at the bottom of each stack so that an overflow faults instead of corrupting.
extern "C" void* emu_map_stacks() {
  using namespace emu;
  void* memory = mmap(nullptr, STACK_BYTES * MAX_THREADS, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  for (int t = 0; t < MAX_THREADS; t++) mprotect((char*)memory + t * STACK_BYTES, 4096, PROT_NONE);
  return memory;
}

extern "C" void emu_use_stacks(void* stacks) { emu::ctx.stacks = (char*)stacks; }

// --- synchronization ----------------------------------------------------------------------------

#define __syncthreads() emu::barrier(emu::WAIT_BLOCK, __LINE__)
#define __syncwarp(...) emu::barrier(emu::WAIT_WARP, __LINE__)
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)
#define assert(cond)                                                         \
  ((cond) ? (void)0                                                          \
          : (emu::fail("assert(%s) failed at line %d", #cond, __LINE__), \
             emu::abort_thread()))
#define __trap() (emu::fail("__trap() at line %d", __LINE__), emu::abort_thread())

namespace emu {
static inline int lane_id() {
  return (int)((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x);
}

// A warp exchange: every lane offers a value, all wait, each reads its source lane, all wait again
// (so no lane overwrites its offer before the others have read it).
template <class T>
static T exchange(T value, int source, int line) {
  int me = lane_id(), base = me - me % 32;
  uint64_t bits = 0;
  memcpy(&bits, &value, sizeof(T));
  ctx.lane_value[me] = bits;
  barrier(WAIT_WARP, line);
  int from = base + source;
  T result = value;
  if (from >= 0 && from < ctx.n_threads && ctx.fibers[from].state != DONE) {
    memcpy(&result, &ctx.lane_value[from], sizeof(T));
  } else if (from != me && from < ctx.n_threads) {
    char a[64];
    fail("warp shuffle at line %d: %s reads lane %d, which has exited", line, thread_text(me, a),
         source);
  }
  barrier(WAIT_WARP, line);
  return result;
}

template <class T>
static T shfl_down(T value, unsigned delta, int width, int line) {
  int lane = lane_id() % 32, segment = lane - lane % width;
  int source = lane + (int)delta < segment + width ? lane + (int)delta : lane;
  return exchange(value, source, line);
}
template <class T>
static T shfl_up(T value, unsigned delta, int width, int line) {
  int lane = lane_id() % 32, segment = lane - lane % width;
  int source = lane - (int)delta >= segment ? lane - (int)delta : lane;
  return exchange(value, source, line);
}
template <class T>
static T shfl_xor(T value, int mask, int width, int line) {
  int lane = lane_id() % 32, segment = lane - lane % width;
  int source = lane ^ mask;
  if (source < segment || source >= segment + width) source = lane;
  return exchange(value, source, line);
}
template <class T>
static T shfl(T value, int src, int width, int line) {
  int lane = lane_id() % 32, segment = lane - lane % width;
  return exchange(value, segment + ((src % width) + width) % width, line);
}

static unsigned ballot(int predicate, int line) {
  int me = lane_id(), base = me - me % 32;
  ctx.lane_value[me] = predicate != 0;
  barrier(WAIT_WARP, line);
  unsigned mask = 0;
  for (int k = 0; k < 32 && base + k < ctx.n_threads; k++)
    if (ctx.fibers[base + k].state != DONE && ctx.lane_value[base + k]) mask |= 1u << k;
  barrier(WAIT_WARP, line);
  return mask;
}
}  // namespace emu

#define __shfl_down_sync(mask, value, delta, ...) \
  emu::shfl_down(value, delta, emu_width(__VA_ARGS__ + 0), __LINE__)
#define __shfl_up_sync(mask, value, delta, ...) \
  emu::shfl_up(value, delta, emu_width(__VA_ARGS__ + 0), __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask, ...) \
  emu::shfl_xor(value, lane_mask, emu_width(__VA_ARGS__ + 0), __LINE__)
#define __shfl_sync(mask, value, src, ...) \
  emu::shfl(value, src, emu_width(__VA_ARGS__ + 0), __LINE__)
#define __ballot_sync(mask, predicate) emu::ballot(predicate, __LINE__)
#define __any_sync(mask, predicate) (emu::ballot(predicate, __LINE__) != 0)
#define __activemask() 0xffffffffu
static inline int emu_width(int width) { return width > 0 ? width : 32; }

static inline int __syncthreads_count(int predicate) {
  static int count;  // one block at a time: a plain static is the block's shared counter
  emu::barrier(emu::WAIT_BLOCK, -1);
  count = 0;
  emu::barrier(emu::WAIT_BLOCK, -2);
  count += predicate != 0;
  emu::barrier(emu::WAIT_BLOCK, -3);
  return count;
}
#define __syncthreads_or(p) (__syncthreads_count(p) != 0)

// --- atomics: fibers never interleave inside one, so a plain read-modify-write is atomic --------

template <class T> static inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> static inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <class T> static inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T> static inline T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}
template <class T> static inline T atomicMin(T* p, T v) {
  T old = *p;
  if (v < old) *p = v;
  return old;
}
template <class T> static inline T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }
template <class T> static inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <class T> static inline T atomicCAS(T* p, T compare, T v) {
  T old = *p;
  if (old == compare) *p = v;
  return old;
}

// --- device math that the host library lacks ----------------------------------------------------

template <class T> static inline T max(T a, T b) { return a > b ? a : b; }
template <class T> static inline T min(T a, T b) { return a < b ? a : b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// __expf and __logf: glibc declares them already.
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
template <class T> static inline T __ldg(const T* p) { return *p; }
