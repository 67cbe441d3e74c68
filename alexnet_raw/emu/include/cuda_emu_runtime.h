// cuda_emu_runtime.h: the CPU runtime's scheduler. Include exactly once per shared object, after
// the kernels (the JIT glue of alexnet_raw/emu/_jit.py and bindings/emu_runtime.cpp do).
//
// Execution model
//   * A launch spreads its blocks over OS worker threads (blocks taken from an atomic counter).
//   * A worker runs one block at a time. In a module that uses barriers or warp primitives, every
//     CUDA thread of the block is a fiber with its own stack; `__syncthreads()` and the warp
//     primitives switch directly to the next runnable thread, and nobody passes a barrier until
//     every live thread of the block (or every lane named in a warp mask) has arrived at that same
//     barrier. A module without barriers runs its threads to completion one after another.
//   * The order in which runnable threads resume after each barrier is the schedule: forward,
//     reverse or a seeded random permutation. Race-free kernels give bit-identical results under
//     every schedule; a missing barrier shows up as a difference.
//   * Threads waiting at different barriers when nobody can run is a divergence: the launch stops
//     and the error names the kernel, the block and the waiting sites. Device asserts, __trap()
//     and launches a GPU would reject stop the launch the same way.
//   * A thread that has exited while others wait at a barrier is a divergence too (CUDA requires
//     every thread of the block to reach each __syncthreads()).
//   * Shared memory lives in a per-worker arena that is filled with 0xFF bytes (NaN for floats,
//     -1 for integers) at every block start, so reads of never-written shared memory show; under
//     AddressSanitizer the gaps between shared arrays are poisoned as well. The dynamic shared
//     memory ends where a guard page begins, so an overrun past its end faults.
//   * Faults inside kernel code (SIGSEGV, SIGBUS, SIGFPE, SIGILL on a fiber stack, a fiber's stack
//     overflowing into its guard page) stop the launch with an error naming the kernel, block,
//     thread and instruction address instead of killing the process: the signal handler (on an
//     alternate signal stack) resumes the faulting fiber at the top of its own stack in a function
//     that abandons it, as an assert does. Faults elsewhere go to the handler that was there before.
//   * The launching thread only waits: every kPollMilliseconds it calls options.poll (Python's
//     signal handlers: Ctrl-C) and checks the watchdog (options.timeout_seconds); to stop a launch
//     it signals the workers (kCancelSignal), whose handler abandons the running fiber the same way.
#pragma once

// libstdc++ spells __attribute__((__noinline__)), which cuda_emu.h's CUDA qualifier would rewrite
#pragma push_macro("__noinline__")
#undef __noinline__
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#pragma pop_macro("__noinline__")

#include "cuda_emu.h"
#include "cuda_emu_launch.h"
#include "kernel_signature.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

enum ThreadRunState : unsigned char { kRunnable = 0, kWaitBlock = 1, kWaitWarp = 2, kDone = 3 };
// ---------------------------------------------------------------------------------------------
// Context switch. x86-64: save the six callee-saved registers on the current stack, swap stack
// pointers, restore. A new fiber starts in emu_fiber_start with its ThreadState in r12 and the
// entry function in r13.
#if defined(__x86_64__)
extern "C" void emu_switch_context(void** save_sp, void* next_sp) __attribute__((visibility("hidden")));
extern "C" void emu_fiber_start() __attribute__((visibility("hidden")));
asm(R"(
  .text
  .p2align 4
  .globl emu_switch_context
  .hidden emu_switch_context
  .type emu_switch_context, @function
emu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_context, .-emu_switch_context

  .p2align 4
  .globl emu_fiber_start
  .hidden emu_fiber_start
  .type emu_fiber_start, @function
emu_fiber_start:
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%r13
  ud2
  .size emu_fiber_start, .-emu_fiber_start
)");
#endif

struct Worker;
thread_local Worker* current_worker = nullptr;  // only for the slow paths (assert from host code)

inline Worker& this_worker() { return *static_cast<Worker*>(fiber_header()->worker); }
inline ThreadState& this_thread() { return *fiber_header()->thread; }

// ---------------------------------------------------------------------------------------------
// Stacks: kFiberStackBytes each, aligned to that size; the first page is a guard page (PROT_NONE,
// so an overflow faults), the FiberHeader sits near the top (see cuda_emu.h). Launches reuse them.
struct StackRegion {
  char* mapping = nullptr;
  size_t mapping_bytes = 0;
  char* base = nullptr;  // first aligned chunk
  size_t count = 0;
};

struct StackPool {
  std::mutex mutex;
  std::vector<StackRegion> free_regions;

  StackRegion take(size_t count) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (size_t i = 0; i < free_regions.size(); ++i) {
        if (free_regions[i].count >= count) {
          StackRegion r = free_regions[i];
          free_regions.erase(free_regions.begin() + long(i));
          return r;
        }
      }
    }
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    StackRegion r;
    r.count = count;
    r.mapping_bytes = (count + 1) * kFiberStackBytes;
    void* p = mmap(nullptr, r.mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return StackRegion{};
    r.mapping = static_cast<char*>(p);
    unsigned long aligned = (reinterpret_cast<unsigned long>(p) + kFiberStackBytes - 1) & ~(kFiberStackBytes - 1);
    r.base = reinterpret_cast<char*>(aligned);
    for (size_t i = 0; i < count; ++i) mprotect(r.base + i * kFiberStackBytes, page, PROT_NONE);
    return r;
  }
  void give_back(StackRegion r) {
    if (!r.mapping) return;
    std::lock_guard<std::mutex> lock(mutex);
    free_regions.push_back(r);
    if (free_regions.size() > 8) {  // keep a few, unmap the rest
      StackRegion old = free_regions.front();
      free_regions.erase(free_regions.begin());
      munmap(old.mapping, old.mapping_bytes);
    }
  }
};
inline StackPool& stack_pool() {
  static StackPool* pool = new StackPool();  // never destroyed: workers may outlive static destruction
  return *pool;
}

constexpr size_t kSharedArenaBytes = 256 * 1024;
constexpr size_t kSharedRedzone = 64;

struct SharedSlot {
  const void* site;
  size_t offset;
};

struct Launch {
  const KernelEntry* kernel;
  void** args;
  dim3 grid, block;
  size_t dynamic_shared;
  LaunchOptions options;
  unsigned long long total_blocks;
  std::atomic<unsigned long long> next_block{0};
  std::atomic<bool> failed{false};
  std::atomic<int> stop{0};  // a StopReason: the launcher asks the workers to abandon their blocks
  std::mutex error_mutex;
  std::string error;

  // the workers (pool threads) running this launch, for the launcher to wait for and to signal
  std::mutex done_mutex;
  std::condition_variable done_cv;
  int running = 0;
  std::vector<pthread_t> active;

  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!failed.load()) error = message;
    failed.store(true);
  }
  void worker_started() {
    std::lock_guard<std::mutex> lock(done_mutex);
    active.push_back(pthread_self());
  }
  void worker_finished() {  // the Launch may be gone once this returns
    std::lock_guard<std::mutex> lock(done_mutex);
    active.erase(std::find(active.begin(), active.end(), pthread_self()));
    if (--running == 0) done_cv.notify_all();
  }
};

// Shared memory of one OS worker thread, kept for the thread's lifetime:
// [guard page][kSharedArenaBytes][guard page]. The dynamic shared memory of a block ends at the
// upper guard page; static __shared__ arrays are placed below it, downwards.
struct SharedArena {
  char* mapping = nullptr;
  size_t mapping_bytes = 0;
  char* begin = nullptr;
  char* end = nullptr;
  char* low_water = nullptr;  // lowest byte any block has used (what a new block refills)

  SharedArena() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    mapping_bytes = page + kSharedArenaBytes + page;
    void* m = mmap(nullptr, mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;  // worker_loop reports it
    mapping = static_cast<char*>(m);
    mprotect(mapping, page, PROT_NONE);
    mprotect(mapping + page + kSharedArenaBytes, page, PROT_NONE);
    begin = mapping + page;
    end = low_water = begin + kSharedArenaBytes;  // filled with 0xFF as blocks first use it
#if defined(EMU_ASAN)
    // AddressSanitizer reports an access to a guard page itself (before the access faults)
    ASAN_POISON_MEMORY_REGION(mapping, page);
    ASAN_POISON_MEMORY_REGION(end, page);
#endif
  }
  ~SharedArena() {
    if (mapping) munmap(mapping, mapping_bytes);
  }
  SharedArena(const SharedArena&) = delete;
  SharedArena& operator=(const SharedArena&) = delete;
};
inline SharedArena& thread_shared_arena() {
  static thread_local SharedArena arena;
  return arena;
}

struct Worker {
  Launch* launch = nullptr;
  BlockState block{};
  std::vector<ThreadState> threads;
  std::vector<unsigned char> states;  // ThreadRunState per thread, compact for the scans
  std::vector<unsigned> order;        // the schedule: order in which runnable threads resume
  unsigned cursor = 0;                // position in `order` of the current round
  unsigned long long round = 0;
  unsigned long long block_linear = 0;
  unsigned live = 0;
  // the block barrier being assembled: arrivals, the first arrival, whether a later one came to
  // another site, and the running reductions of __syncthreads_count/_and/_or
  unsigned block_arrived = 0;
  const ThreadState* barrier_first = nullptr;
  bool barrier_mismatch = false;
  int reduce_count = 0, reduce_all = 1, reduce_any = 0, reduce_result = 0;
  unsigned long long warp_slots[1024];
  unsigned warp_waiting[32];
  bool aborted = false;
  std::string abort_message;
  ThreadState runner{};  // barrier-free kernels: the one fiber that runs every thread
  StackRegion stacks;
  void* scheduler_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t scheduler_ctx;
  std::vector<ucontext_t> contexts;  // one per fiber, plus the runner's at the end
#endif
#if defined(EMU_ASAN)
  void* scheduler_fake_stack = nullptr;
  const void* os_stack_bottom = nullptr;
  size_t os_stack_size = 0;
#endif
  // shared memory (this OS thread's SharedArena)
  SharedArena& shared;
  char* arena = nullptr;       // lowest usable byte
  char* arena_end = nullptr;   // the upper guard page
  char* dynamic = nullptr;     // this launch's dynamic shared memory, ending at arena_end
  char* static_low = nullptr;  // lowest byte given to a static array in this block
  char* low_water = nullptr;   // lowest byte any block has used (what a new block refills)
  size_t static_shared_bytes = 0;
  std::vector<SharedSlot> slots;
  // a fault or a stop request seen by the signal handler, for the code that abandons the fiber
  int fault_signal = 0, fault_code = 0, fault_write = -1;  // fault_write: 1 write, 0 read, -1 unknown
  void* fault_address = nullptr;
  void* fault_pc = nullptr;
  bool fault_in_guard = false;
  volatile sig_atomic_t handling_fault = 0;  // a fiber of this block is being abandoned after a signal
  volatile sig_atomic_t switching = 0;       // inside switch_fiber

  Worker() : shared(thread_shared_arena()) {
    arena = shared.begin;
    arena_end = dynamic = static_low = shared.end;
    low_water = shared.low_water;
  }
  ~Worker() {
#if defined(EMU_ASAN)
    if (arena) ASAN_UNPOISON_MEMORY_REGION(arena, kSharedArenaBytes);
#endif
    shared.low_water = low_water;
    stack_pool().give_back(stacks);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Shared memory
inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

inline void reset_shared(Worker& w) {
  const size_t dyn = w.launch->dynamic_shared;
  w.dynamic = w.arena_end - align_up(dyn, 16);
  w.low_water = std::min(w.low_water, w.dynamic);
#if defined(EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(w.arena, kSharedArenaBytes);
#endif
  if (w.launch->options.poison) memset(w.low_water, 0xFF, size_t(w.arena_end - w.low_water));
  w.static_low = w.dynamic - kSharedRedzone;
  w.static_shared_bytes = 0;
  w.slots.clear();
#if defined(EMU_ASAN)
  ASAN_POISON_MEMORY_REGION(w.arena, size_t(w.dynamic - w.arena));
  ASAN_POISON_MEMORY_REGION(w.dynamic + dyn, size_t(w.arena_end - (w.dynamic + dyn)));
#endif
}

void* shared_dynamic() { return this_worker().dynamic; }

void* shared_static(const void* site, size_t bytes, size_t align) {
  Worker& w = this_worker();
  for (const SharedSlot& s : w.slots)
    if (s.site == site) return w.arena + s.offset;
  const size_t a = std::max<size_t>(align, 16);
  const size_t room = size_t(w.static_low - w.arena);
  const size_t total = w.launch->dynamic_shared + w.static_shared_bytes + bytes;
  if (bytes + a + kSharedRedzone > room || total > w.launch->options.max_shared_bytes) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "the block needs at least %zu bytes of shared memory (%zu dynamic + static arrays), more than the "
             "%zu a GPU allows for this launch",
             total, w.launch->dynamic_shared, w.launch->options.max_shared_bytes);
    abort_kernel(msg, "", 0);
  }
  char* p = reinterpret_cast<char*>(reinterpret_cast<unsigned long>(w.static_low - bytes) & ~(a - 1));
  const size_t offset = size_t(p - w.arena);
  w.slots.push_back(SharedSlot{site, offset});
  w.static_shared_bytes += bytes;
  w.static_low = p - kSharedRedzone;
  if (w.static_low < w.low_water) {  // first use of this part of the arena: fill it as reset_shared does
#if defined(EMU_ASAN)
    ASAN_UNPOISON_MEMORY_REGION(w.static_low, size_t(w.low_water - w.static_low));
#endif
    if (w.launch->options.poison) memset(w.static_low, 0xFF, size_t(w.low_water - w.static_low));
#if defined(EMU_ASAN)
    ASAN_POISON_MEMORY_REGION(w.static_low, size_t(w.low_water - w.static_low));
#endif
    w.low_water = w.static_low;
  }
#if defined(EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(w.arena + offset, bytes);
#endif
  return w.arena + offset;
}

// ---------------------------------------------------------------------------------------------
// Fibers. Threads switch directly to the next runnable thread of the block; control returns to
// the scheduler (the worker's own stack) only when the block has finished, was aborted, or
// nobody can run.
void fiber_main(ThreadState* t);

inline void prepare_fiber(Worker& w, ThreadState& t, size_t index) {
  char* chunk = w.stacks.base + index * kFiberStackBytes;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  FiberHeader* h = fiber_header_of(reinterpret_cast<unsigned long>(chunk));  // what fiber_header() finds
  h->thread = &t;
  h->block = &w.block;
  h->worker = &w;
  t.stack_base = chunk + page;  // above the guard page
  t.stack_size = size_t(reinterpret_cast<char*>(h) - static_cast<char*>(t.stack_base));
  t.asan_fake_stack = nullptr;
#if defined(EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(t.stack_base, t.stack_size);
#endif
#if defined(__x86_64__)
  void** sp = reinterpret_cast<void**>(h);  // the stack grows down from just below the header
  *--sp = nullptr;                                    // fake return address of the start routine
  *--sp = reinterpret_cast<void*>(&emu_fiber_start);  // `ret` of emu_switch_context lands here
  *--sp = nullptr;                                    // rbp
  *--sp = nullptr;                                    // rbx
  *--sp = static_cast<void*>(&t);                     // r12: argument
  *--sp = reinterpret_cast<void*>(&fiber_main);       // r13: entry
  *--sp = nullptr;                                    // r14
  *--sp = nullptr;                                    // r15
  t.sp = sp;
#else
  ucontext_t& c = w.contexts[&t == &w.runner ? w.contexts.size() - 1 : index];
  getcontext(&c);
  c.uc_stack.ss_sp = t.stack_base;
  c.uc_stack.ss_size = t.stack_size;
  c.uc_link = nullptr;
  makecontext(&c, reinterpret_cast<void (*)()>(&fiber_main), 1, &t);
#endif
}

// Switch from `from` (nullptr: the scheduler) to `to` (nullptr: the scheduler). `finished`: the
// fiber we leave never runs again.
inline void switch_fiber(Worker& w, ThreadState* from, ThreadState* to, bool finished) {
  w.switching = 1;  // a stop request must not abandon a fiber halfway through a switch
  std::atomic_signal_fence(std::memory_order_seq_cst);
#if defined(EMU_ASAN)
  void** fake_save = from ? (finished ? nullptr : &from->asan_fake_stack) : &w.scheduler_fake_stack;
  __sanitizer_start_switch_fiber(fake_save, to ? to->stack_base : w.os_stack_bottom,
                                 to ? to->stack_size : w.os_stack_size);
#else
  (void)finished;
#endif
#if defined(__x86_64__)
  emu_switch_context(from ? &from->sp : &w.scheduler_sp, to ? to->sp : w.scheduler_sp);
#else
  auto ctx = [&w](ThreadState* t) -> ucontext_t* {
    if (!t) return &w.scheduler_ctx;
    if (t == &w.runner) return &w.contexts.back();
    return &w.contexts[size_t(t - w.threads.data())];
  };
  swapcontext(ctx(from), ctx(to));
#endif
#if defined(EMU_ASAN)
  __sanitizer_finish_switch_fiber(from ? from->asan_fake_stack : w.scheduler_fake_stack, nullptr, nullptr);
#endif
  std::atomic_signal_fence(std::memory_order_seq_cst);
  w.switching = 0;
}

inline std::string describe_block(const Worker& w) {
  char b[160];
  snprintf(b, sizeof b, "kernel '%s', block (%u,%u,%u)", w.launch->kernel->name, w.block.idx.x, w.block.idx.y,
           w.block.idx.z);
  return b;
}
inline std::string describe_thread(const ThreadState& t) {
  char b[64];
  snprintf(b, sizeof b, "thread (%u,%u,%u)", t.idx.x, t.idx.y, t.idx.z);
  return b;
}

// Stop the launch from inside kernel code: record why, abandon this fiber for good.
[[noreturn]] void abort_kernel(const char* what, const char* file, int line) {
  Worker& w = this_worker();
  ThreadState& t = this_thread();
  if (!w.aborted) {
    w.aborted = true;
    char where[512];
    if (line > 0)
      snprintf(where, sizeof where, " at %s:%d", file, line);
    else
      where[0] = 0;
    w.abort_message = std::string(what) + where + " in " + describe_block(w) + ", " + describe_thread(t);
  }
  ThreadState* fiber = w.block.fibers ? &t : &w.runner;
  if (w.block.fibers) w.states[t.linear] = kDone;
  switch_fiber(w, fiber, nullptr, true);
  __builtin_unreachable();
}

// ---------------------------------------------------------------------------------------------
// Faults and stop requests. The handlers act only when the interrupted code runs on one of this
// worker's fiber stacks (kernel code, or the runtime on behalf of a CUDA thread); then they make
// the fiber resume, at the top of its own stack (which an overflow has exhausted), in a function
// that abandons it through abort_kernel. Nothing is unwound: the signal handler returns normally.
// What cannot be recovered: a stray write that corrupted memory without faulting, and a kernel
// stopped while it held a C library lock (inside printf or malloc).
enum StopReason { kNoStop = 0, kStopInterrupted = 1, kStopTimeout = 2 };
constexpr int kPollMilliseconds = 50;
inline int cancel_signal() { return SIGRTMIN + 5; }

inline unsigned long context_sp(const ucontext_t* uc) {
#if defined(__x86_64__)
  return (unsigned long)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
  return (unsigned long)uc->uc_mcontext.sp;
#else
  (void)uc;
  return 0;  // other machines: faults are not caught
#endif
}
inline unsigned long context_pc(const ucontext_t* uc) {
#if defined(__x86_64__)
  return (unsigned long)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
  return (unsigned long)uc->uc_mcontext.pc;
#else
  (void)uc;
  return 0;
#endif
}

// Resume the interrupted fiber in `entry` on a fresh frame at the top of its stack chunk.
inline bool redirect_fiber(ucontext_t* uc, unsigned long chunk, void (*entry)()) {
  const unsigned long top = (reinterpret_cast<unsigned long>(fiber_header_of(chunk)) - 256) & ~15ul;
#if defined(EMU_ASAN)
  // the abandoned frames' redzones are still poisoned where the new frame goes
  const unsigned long usable = chunk + (unsigned long)sysconf(_SC_PAGESIZE);
  ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(usable), top - usable);
#endif
#if defined(__x86_64__)
  unsigned long sp = top - 8;  // as after a call: (rsp + 8) % 16 == 0 at the entry of a function
  *reinterpret_cast<unsigned long*>(sp) = 0;
  uc->uc_mcontext.gregs[REG_RSP] = (long long)sp;
  uc->uc_mcontext.gregs[REG_RIP] = (long long)reinterpret_cast<unsigned long>(entry);
  return true;
#elif defined(__aarch64__)
  uc->uc_mcontext.sp = top;
  uc->uc_mcontext.pc = reinterpret_cast<unsigned long>(entry);
  uc->uc_mcontext.regs[30] = 0;
  return true;
#else
  (void)uc, (void)chunk, (void)entry;
  return false;
#endif
}

// The stack chunk of `w` that holds `sp`, or 0.
inline unsigned long fiber_chunk_of(const Worker& w, unsigned long sp) {
  const unsigned long lo = reinterpret_cast<unsigned long>(w.stacks.base);
  if (!lo || sp < lo || sp >= lo + w.stacks.count * kFiberStackBytes) return 0;
  return sp & ~(kFiberStackBytes - 1);
}

inline std::string stop_text(const Launch& L) {
  if (L.stop.load() != kStopTimeout) return "interrupted (Ctrl-C)";
  char b[200];
  snprintf(b, sizeof b,
           "stopped by the watchdog: the launch ran longer than its limit of %g s (emu.set_timeout, "
           "ALEXNET_RAW_EMU_TIMEOUT)",
           L.options.timeout_seconds);
  return b;
}

[[noreturn]] void abandon_after_stop() { abort_kernel(stop_text(*this_worker().launch).c_str(), "", 0); }

[[noreturn]] void abandon_after_fault() {
  Worker& w = this_worker();
  char what[640], where[320] = "";
  const unsigned long address = reinterpret_cast<unsigned long>(w.fault_address);
  const char* access = w.fault_write == 1 ? "write to" : w.fault_write == 0 ? "read of" : "access to";
  if (w.fault_signal == SIGSEGV || w.fault_signal == SIGBUS) {
    const bool in_shared_guard = w.arena && ((address >= reinterpret_cast<unsigned long>(w.arena_end) &&
                                              address < reinterpret_cast<unsigned long>(w.arena_end) + 4096) ||
                                             (address < reinterpret_cast<unsigned long>(w.arena) &&
                                              address + 4096 >= reinterpret_cast<unsigned long>(w.arena)));
    if (w.fault_in_guard)
      snprintf(what, sizeof what,
               "stack overflow: the CUDA thread used more than its %lu KiB stack (deep recursion or large local "
               "arrays)",
               kFiberStackBytes / 1024);
    else if (in_shared_guard)
      snprintf(what, sizeof what,
               "out-of-bounds shared memory %s address 0x%lx: past the block's %zu bytes of dynamic shared memory "
               "or below its static arrays",
               access, address, w.launch->dynamic_shared);
    else
      snprintf(what, sizeof what, "invalid memory %s address 0x%lx (%s%s)", access, address,
               w.fault_signal == SIGSEGV ? "SIGSEGV" : "SIGBUS",
               w.fault_signal == SIGSEGV && w.fault_code == SEGV_ACCERR ? ", no access permission"
               : w.fault_signal == SIGSEGV                             ? ", not mapped"
                                                                       : "");
  } else if (w.fault_signal == SIGFPE) {
    snprintf(what, sizeof what, "%s (SIGFPE)",
             w.fault_code == FPE_INTDIV   ? "integer division by zero"
             : w.fault_code == FPE_INTOVF ? "integer overflow in a division (INT_MIN / -1)"
                                          : "arithmetic exception");
  } else {
    snprintf(what, sizeof what, "illegal instruction (SIGILL)");
  }
  Dl_info info;
  if (w.fault_pc && dladdr(w.fault_pc, &info) && info.dli_fname && info.dli_fbase) {
    // alexnet_raw/emu turns "pc FILE+0xOFFSET" into a source line with addr2line where it can
    snprintf(where, sizeof where, " at pc %s+0x%lx", info.dli_fname,
             reinterpret_cast<unsigned long>(w.fault_pc) - reinterpret_cast<unsigned long>(info.dli_fbase));
  }
  std::string message = std::string(what) + where;
  abort_kernel(message.c_str(), "", 0);
}

struct PreviousHandlers {
  struct sigaction action[4];
  int signals[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
};
inline PreviousHandlers& previous_handlers() {
  static PreviousHandlers p;
  return p;
}
static struct sigaction previous_cancel_action;

// Not ours: hand the signal to whoever had it before, or to the default action.
inline void forward_signal(int sig, siginfo_t* info, void* context, const struct sigaction& previous) {
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
    previous.sa_sigaction(sig, info, context);
  } else if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else if (sig != cancel_signal()) {
    signal(sig, SIG_DFL);  // the faulting instruction runs again and the process ends as it would have
    if (info->si_code <= 0) raise(sig);
  }
}

void on_fault(int sig, siginfo_t* info, void* context) {
  ucontext_t* uc = static_cast<ucontext_t*>(context);
  Worker* w = current_worker;
  const unsigned long chunk = w ? fiber_chunk_of(*w, context_sp(uc)) : 0;
  if (chunk && !w->handling_fault && w->launch) {
    w->handling_fault = 1;
    w->fault_signal = sig;
    w->fault_code = info->si_code;
    w->fault_address = info->si_addr;
    w->fault_pc = reinterpret_cast<void*>(context_pc(uc));
    const unsigned long address = reinterpret_cast<unsigned long>(info->si_addr);
    w->fault_in_guard = address >= chunk && address < chunk + (unsigned long)sysconf(_SC_PAGESIZE);
#if defined(__x86_64__)
    w->fault_write = sig == SIGSEGV ? int((uc->uc_mcontext.gregs[REG_ERR] >> 1) & 1) : -1;
#else
    w->fault_write = -1;
#endif
    if (redirect_fiber(uc, chunk, reinterpret_cast<void (*)()>(&abandon_after_fault))) return;
  }
  for (int i = 0; i < 4; ++i)
    if (previous_handlers().signals[i] == sig) forward_signal(sig, info, context, previous_handlers().action[i]);
}

void on_cancel(int sig, siginfo_t* info, void* context) {
  ucontext_t* uc = static_cast<ucontext_t*>(context);
  Worker* w = current_worker;
  if (w && w->launch && w->launch->stop.load() != kNoStop) {
    const unsigned long chunk = fiber_chunk_of(*w, context_sp(uc));
    if (chunk && !w->handling_fault && !w->switching) {
      w->handling_fault = 1;
      redirect_fiber(uc, chunk, reinterpret_cast<void (*)()>(&abandon_after_stop));
    }
    return;  // between blocks or inside a switch: the worker sees `stop` later (or the next signal)
  }
  forward_signal(sig, info, context, previous_cancel_action);  // another module's launch
}

inline void install_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_sigaction = &on_fault;
    a.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&a.sa_mask);
    for (int i = 0; i < 4; ++i) sigaction(previous_handlers().signals[i], &a, &previous_handlers().action[i]);
    a.sa_sigaction = &on_cancel;
    a.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigaction(cancel_signal(), &a, &previous_cancel_action);
  });
}

// An alternate signal stack for the worker thread, so that a fiber's stack overflow can be handled.
class AlternateSignalStack {
 public:
  AlternateSignalStack() {
    stack_t current;
    if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;  // one is there
    bytes_ = 64 * 1024;
    memory_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory_ == MAP_FAILED) {
      memory_ = nullptr;
      return;
    }
    stack_t s;
    s.ss_sp = memory_;
    s.ss_size = bytes_;
    s.ss_flags = 0;
    sigaltstack(&s, nullptr);
  }
  ~AlternateSignalStack() {
    if (!memory_) return;
    stack_t s;
    memset(&s, 0, sizeof s);
    s.ss_flags = SS_DISABLE;
    sigaltstack(&s, nullptr);
    munmap(memory_, bytes_);
  }
  AlternateSignalStack(const AlternateSignalStack&) = delete;
  AlternateSignalStack& operator=(const AlternateSignalStack&) = delete;

 private:
  void* memory_ = nullptr;
  size_t bytes_ = 0;
};

// Run the kernel body as thread t; an escaping C++ exception stops the launch.
void run_one_thread(Worker& w, ThreadState& t) {
  try {
    w.launch->kernel->thunk(w.launch->args);
  } catch (const std::exception& e) {
    if (!w.aborted) {
      w.aborted = true;
      w.abort_message = std::string("C++ exception from kernel code: ") + e.what() + " in " + describe_block(w) +
                        ", " + describe_thread(t);
    }
  } catch (...) {
    if (!w.aborted) {
      w.aborted = true;
      w.abort_message = "unknown C++ exception from kernel code in " + describe_block(w);
    }
  }
}

inline unsigned long long splitmix64(unsigned long long& s) {
  unsigned long long z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A new round: the order in which runnable threads are resumed until the next barrier release.
inline void new_round(Worker& w) {
  w.cursor = 0;
  if (w.launch->options.schedule != kRandom) return;
  const unsigned n = w.block.nthreads;
  unsigned long long s = w.launch->options.seed ^ (w.block_linear * 0xD1B54A32D192ED03ull) ^ (w.round++ << 32);
  for (unsigned i = n - 1; i > 0; --i) std::swap(w.order[i], w.order[splitmix64(s) % (i + 1)]);
}

inline bool same_site(const ThreadState& a, const ThreadState& b) {
  return a.wait_line == b.wait_line && a.wait_site == b.wait_site &&
         (a.wait_file == b.wait_file || strcmp(a.wait_file, b.wait_file) == 0);
}

// Lanes of warp `wi` that exist in the block.
inline unsigned existing_lanes(const Worker& w, unsigned wi) {
  unsigned n = w.block.nthreads - wi * 32;
  return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

inline void fail_divergence(Worker& w, const std::string& why) {
  // Group the waiting threads by site for a readable message.
  std::string msg = "barrier divergence in " + describe_block(w) + ": " + why;
  struct Group {
    int kind;
    const ThreadState* site;
    unsigned first, last, count;
  };
  std::vector<Group> groups;
  for (const ThreadState& t : w.threads) {
    const unsigned char st = w.states[t.linear];
    if (st != kWaitBlock && st != kWaitWarp) continue;
    int kind = st == kWaitBlock ? 0 : 1;
    bool found = false;
    for (Group& g : groups)
      if (g.kind == kind && same_site(*g.site, t)) {
        g.last = t.linear;
        ++g.count;
        found = true;
        break;
      }
    if (!found) groups.push_back(Group{kind, &t, t.linear, t.linear, 1});
  }
  for (size_t i = 0; i < groups.size() && i < 8; ++i) {
    char b[512], column[32] = "";
    if (groups[i].site->wait_site > 0) snprintf(column, sizeof column, " (column %d)", groups[i].site->wait_site);
    snprintf(b, sizeof b, "%s %u thread(s) (linear ids %u..%u) wait at %s %s:%d%s", i ? ";" : "", groups[i].count,
             groups[i].first, groups[i].last, groups[i].kind == 0 ? "__syncthreads()" : "a warp primitive",
             groups[i].site->wait_file, groups[i].site->wait_line, column);
    msg += b;
  }
  unsigned done = 0, first_done = 0;
  for (const ThreadState& t : w.threads)
    if (w.states[t.linear] == kDone && done++ == 0) first_done = t.linear;
  if (done) {
    char b[160];
    snprintf(b, sizeof b, "; %u thread(s) have exited (the first: linear id %u)", done, first_done);
    msg += b;
  }
  w.aborted = true;
  w.abort_message = msg;
}

// After `t` stopped running (it waits or has finished): release a barrier that is now complete,
// or record a divergence.
inline void after_stop(Worker& w, ThreadState& t) {
  const unsigned char st = w.states[t.linear];
  if (st == kDone) {
    --w.live;
  } else if (st == kWaitWarp) {
    const unsigned wi = t.linear >> 5;
    const unsigned needed = t.wait_mask & existing_lanes(w, wi);
    if ((w.warp_waiting[wi] & needed) == needed) {
      for (unsigned l = 0; l < 32; ++l) {
        if (!((needed >> l) & 1u)) continue;
        const ThreadState& o = w.threads[wi * 32 + l];
        if (!same_site(o, t) || o.wait_mask != t.wait_mask) {
          fail_divergence(w, "lanes of one warp wait at different warp primitives or with different masks;");
          return;
        }
      }
      for (unsigned l = 0; l < 32; ++l)
        if ((needed >> l) & 1u) w.states[wi * 32 + l] = kRunnable;
      w.warp_waiting[wi] &= ~needed;
      new_round(w);
      return;
    }
  }
  // A block barrier completes when every live thread waits at it (exited threads no longer
  // count). block_arrived == live implies that nobody waits at a warp primitive.
  if (w.live > 0 && w.block_arrived == w.live) {
    if (w.barrier_mismatch) {
      fail_divergence(w, "threads of one block wait at different __syncthreads() calls;");
      return;
    }
    if (w.live < w.block.nthreads) {
      fail_divergence(w, "threads have exited while others wait at __syncthreads() (every thread of the block "
                         "must reach it);");
      return;
    }
    const int kind = w.barrier_first->wait_kind;
    if (kind) w.reduce_result = kind == 1 ? w.reduce_count : kind == 2 ? w.reduce_all : w.reduce_any;
    for (unsigned char& s : w.states)
      if (s == kWaitBlock) s = kRunnable;
    w.block_arrived = 0;
    new_round(w);
  }
}

// `t` arrives at a block barrier.
inline void arrive_block(Worker& w, ThreadState& t, const char* file, int line, int kind, int predicate) {
  w.states[t.linear] = kWaitBlock;
  t.wait_file = file;
  t.wait_line = line;
  t.wait_site = t.site;
  t.wait_kind = kind;
  if (w.block_arrived == 0) {
    w.barrier_first = &t;
    w.barrier_mismatch = false;
    w.reduce_count = 0;
    w.reduce_all = 1;
    w.reduce_any = 0;
  } else if (!same_site(t, *w.barrier_first) || kind != w.barrier_first->wait_kind) {
    w.barrier_mismatch = true;
  }
  predicate = predicate != 0;
  w.reduce_count += predicate;
  w.reduce_all &= predicate;
  w.reduce_any |= predicate;
  ++w.block_arrived;
}

inline ThreadState* next_runnable(Worker& w) {
  const unsigned n = w.block.nthreads;
  while (w.cursor < n) {
    const unsigned i = w.order[w.cursor++];
    if (w.states[i] == kRunnable) {
      if (w.cursor < n) {
        // The thread after this one will most likely run next: fetch its saved registers and the
        // top of its frames now, so that switching to it does not wait for L2.
        const char* sp = static_cast<const char*>(w.threads[w.order[w.cursor]].sp);
        __builtin_prefetch(sp);
        __builtin_prefetch(sp + 64);
        __builtin_prefetch(sp + 128);
      }
      return &w.threads[i];
    }
  }
  return nullptr;
}

// `t` has stopped (waiting or finished): run whoever is next, or return to the scheduler.
inline void stop_and_continue(Worker& w, ThreadState& t, bool finished) {
  // Common case first: a block barrier that still waits for others needs no bookkeeping.
  if (!(w.states[t.linear] == kWaitBlock && w.block_arrived < w.live)) after_stop(w, t);
  ThreadState* next = w.aborted ? nullptr : next_runnable(w);
  if (next == &t) return;  // released and first in the new round: keep running
  switch_fiber(w, &t, next, finished);
}

void fiber_main(ThreadState* t) {
  Worker& w = this_worker();
#if defined(EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  std::atomic_signal_fence(std::memory_order_seq_cst);
  w.switching = 0;  // a new fiber starts here, not after a switch_fiber call
  if (w.block.fibers) {
    run_one_thread(w, *t);
    w.states[t->linear] = kDone;
    stop_and_continue(w, *t, true);
  } else {
    // No barriers in this kernel: one fiber (the runner) runs every thread of the block to
    // completion, in schedule order. It is a fiber so that an assert can abandon it.
    FiberHeader* h = fiber_header();
    for (unsigned i : w.order) {
      h->thread = &w.threads[i];
      run_one_thread(w, w.threads[i]);
      if (w.aborted) break;
    }
    h->thread = t;
    switch_fiber(w, t, nullptr, true);
  }
  __builtin_unreachable();
}

// ---------------------------------------------------------------------------------------------
// Barriers
void block_barrier(const char* file, int line) {
  Worker& w = this_worker();
  ThreadState& t = this_thread();
  if (!w.block.fibers)
    abort_kernel("internal error: barrier reached in a kernel the runtime classified as barrier-free", file, line);
  arrive_block(w, t, file, line, 0, 0);
  stop_and_continue(w, t, false);
}

int block_barrier_reduce(int predicate, int op, const char* file, int line) {
  Worker& w = this_worker();
  ThreadState& t = this_thread();
  if (!w.block.fibers)
    abort_kernel("internal error: barrier reached in a kernel the runtime classified as barrier-free", file, line);
  arrive_block(w, t, file, line, 1 + op, predicate);  // kinds: 1 count, 2 and, 3 or
  stop_and_continue(w, t, false);
  return w.reduce_result;
}

void warp_barrier(unsigned mask, const char* file, int line) {
  Worker& w = this_worker();
  ThreadState& t = this_thread();
  if (!w.block.fibers)
    abort_kernel("internal error: warp primitive reached in a kernel the runtime classified as barrier-free", file,
                 line);
  if (!((mask >> t.lane) & 1u)) abort_kernel("warp primitive called by a lane that is not in its mask", file, line);
  w.states[t.linear] = kWaitWarp;
  t.wait_file = file;
  t.wait_line = line;
  t.wait_site = t.site;
  t.wait_mask = mask;
  w.warp_waiting[t.linear >> 5] |= 1u << t.lane;
  stop_and_continue(w, t, false);
}

unsigned long long& warp_slot(unsigned lane_in_block) { return this_worker().warp_slots[lane_in_block]; }

unsigned active_mask() {
  Worker& w = this_worker();
  unsigned base = this_thread().linear & ~31u, m = 0;
  for (unsigned l = 0; l < 32 && base + l < w.block.nthreads; ++l)
    if (w.states[base + l] != kDone) m |= 1u << l;
  return m;
}

// ---------------------------------------------------------------------------------------------
// Blocks and launches
inline void run_block(Worker& w, unsigned long long linear) {
  Launch& L = *w.launch;
  const unsigned long long gx = L.grid.x, gy = L.grid.y;
  w.block.idx = uint3{unsigned(linear % gx), unsigned((linear / gx) % gy), unsigned(linear / (gx * gy))};
  w.block_linear = linear;
  w.handling_fault = 0;
  reset_shared(w);
  w.round = 0;
  w.aborted = false;
  w.block_arrived = 0;
  memset(w.warp_waiting, 0, sizeof w.warp_waiting);
  const unsigned n = w.block.nthreads;
  const unsigned bx = L.block.x, by = L.block.y;
  for (unsigned i = 0; i < n; ++i) {
    ThreadState& t = w.threads[i];
    t.idx = uint3{i % bx, (i / bx) % by, i / (bx * by)};
    t.linear = i;
    t.lane = i & 31u;
    t.site = 0;
    w.states[i] = kRunnable;
    w.order[i] = L.options.schedule == kReverse ? n - 1 - i : i;
  }
  new_round(w);
  if (!w.block.fibers) {
    prepare_fiber(w, w.runner, 0);
    switch_fiber(w, nullptr, &w.runner, false);
    return;
  }
  for (unsigned i = 0; i < n; ++i) prepare_fiber(w, w.threads[i], i);
  w.live = n;
  // The threads now pass control among themselves; we are back here when the block is done,
  // was aborted, or nobody can run.
  switch_fiber(w, nullptr, next_runnable(w), false);
  if (w.aborted || w.live == 0) return;
  unsigned exited_in_masks = 0;
  for (const ThreadState& t : w.threads)
    if (w.states[t.linear] == kWaitWarp) {
      unsigned wi = t.linear >> 5;
      for (unsigned l = 0; l < 32; ++l)
        if (((t.wait_mask & existing_lanes(w, wi)) >> l & 1u) && w.states[wi * 32 + l] == kDone)
          exited_in_masks |= 1u << l;
    }
  fail_divergence(w, exited_in_masks ? "a warp primitive's mask names lanes that have exited;"
                                     : "no thread can make progress;");
}

// -ftz=true (what CuPy appends to every RawModule compilation): float32 subnormals are read and
// written as zero. The CPU's equivalent is per OS thread and per kernel: on x86 the MXCSR bits
// FTZ (results) and DAZ (inputs), on AArch64 FPCR.FZ; both also flush doubles, so the caller sets
// flush_denormals only for kernels without double parameters (alexnet_raw/emu/__init__.py).
class DenormalsFlushed {
 public:
  explicit DenormalsFlushed(bool on) : on_(on) {
    if (!on_) return;
#if defined(__x86_64__) || defined(__i386__)
    saved_ = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
#elif defined(__aarch64__)
    unsigned long long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    fpcr |= 1ull << 24;  // FZ
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
  }
  ~DenormalsFlushed() {
    if (!on_) return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_ldmxcsr(unsigned(saved_));
#elif defined(__aarch64__)
    __asm__ volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  DenormalsFlushed(const DenormalsFlushed&) = delete;
  DenormalsFlushed& operator=(const DenormalsFlushed&) = delete;

 private:
  bool on_;
  unsigned long long saved_ = 0;
};

inline void worker_loop(Launch& L) {
  DenormalsFlushed flushed(L.options.flush_denormals != 0);
  Worker w;
  if (!w.arena) {
    L.fail("could not map the shared memory arena");
    return;
  }
  current_worker = &w;
  w.launch = &L;
#if defined(EMU_ASAN)
  {
    pthread_attr_t attr;
    pthread_getattr_np(pthread_self(), &attr);
    void* addr;
    size_t size;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    w.os_stack_bottom = addr;
    w.os_stack_size = size;
  }
#endif
  const unsigned n = L.block.x * L.block.y * L.block.z;
  w.block.dim = L.block;
  w.block.grid = L.grid;
  w.block.nthreads = n;
  w.block.fibers = L.kernel->fibers;
  w.threads.resize(n);
  w.states.assign(n, kRunnable);
  w.order.resize(n);
#if !defined(__x86_64__)
  w.contexts.resize(n + 1);
#endif
  w.stacks = stack_pool().take(w.block.fibers ? n : 1);
  if (!w.stacks.mapping) {
    L.fail("could not map fiber stacks");
    current_worker = nullptr;
    return;
  }
  for (;;) {
    if (L.failed.load(std::memory_order_relaxed) || L.stop.load(std::memory_order_relaxed)) break;
    const unsigned long long b = L.next_block.fetch_add(1);
    if (b >= L.total_blocks) break;
    run_block(w, b);
    if (w.aborted) {
      L.fail(w.abort_message);
      break;
    }
  }
  current_worker = nullptr;
}

// The OS threads that run blocks, kept between launches (creating threads per launch cost more
// than a small launch). Jobs are launches; a launch that wants k workers queues k jobs. A forked
// child gets a new pool (the parent's threads do not exist there).
class WorkerPool {
 public:
  static WorkerPool& get() {
    static std::mutex mutex;
    static WorkerPool* pool = nullptr;  // never destroyed: its threads live until the process ends
    std::lock_guard<std::mutex> lock(mutex);
    if (!pool || pool->pid_ != getpid()) pool = new WorkerPool();  // a forked child leaks the old one
    return *pool;
  }

  void submit(Launch* L, int workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (idle_ - int(jobs_.size()) < workers) {
      std::thread([this] { thread_main(); }).detach();
      ++idle_;
    }
    for (int i = 0; i < workers; ++i) jobs_.push_back(L);
    wake_.notify_all();
  }

 private:
  WorkerPool() : pid_(getpid()) {}

  void thread_main();

  pid_t pid_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Launch*> jobs_;
  int idle_ = 0;  // threads waiting for a job, or started and about to
};

inline void WorkerPool::thread_main() {
  AlternateSignalStack signal_stack;  // so that a fiber's stack overflow can be handled
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return !jobs_.empty(); });
    Launch* L = jobs_.back();
    jobs_.pop_back();
    --idle_;
    lock.unlock();
    L->worker_started();
    worker_loop(*L);
    L->worker_finished();
    lock.lock();
    ++idle_;
  }
}

inline int default_threads() {
  unsigned h = std::thread::hardware_concurrency();
  return h ? int(h) : 1;
}

// Launch `kernel` and wait for it. Returns 0, or 1 with `*error` set.
int launch(const KernelEntry& kernel, dim3 grid, dim3 block, size_t dynamic_shared, void** args,
           const LaunchOptions& options, std::string* error) {
  char msg[320];
  const unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    snprintf(msg, sizeof msg, "invalid launch of '%s': grid (%u,%u,%u) and block (%u,%u,%u) must be positive",
             kernel.name, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    *error = msg;
    return 1;
  }
  if (nthreads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    snprintf(msg, sizeof msg,
             "invalid launch of '%s': block (%u,%u,%u) exceeds the GPU limits (at most 1024 threads, x and y <= "
             "1024, z <= 64)",
             kernel.name, block.x, block.y, block.z);
    *error = msg;
    return 1;
  }
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u) {
    snprintf(msg, sizeof msg,
             "invalid launch of '%s': grid (%u,%u,%u) exceeds the GPU limits (x < 2^31, y and z <= 65535)",
             kernel.name, grid.x, grid.y, grid.z);
    *error = msg;
    return 1;
  }
  if (dynamic_shared > options.max_shared_bytes) {
    snprintf(msg, sizeof msg,
             "invalid launch of '%s': %zu bytes of dynamic shared memory requested, a GPU allows %zu for this launch",
             kernel.name, dynamic_shared, options.max_shared_bytes);
    *error = msg;
    return 1;
  }
  Launch L;
  L.kernel = &kernel;
  L.args = args;
  L.grid = grid;
  L.block = block;
  L.dynamic_shared = dynamic_shared;
  L.options = options;
  L.total_blocks = (unsigned long long)grid.x * grid.y * grid.z;
  int workers = options.num_threads > 0 ? options.num_threads : default_threads();
  if ((unsigned long long)workers > L.total_blocks) workers = int(L.total_blocks);
  install_signal_handlers();
  // Pool threads run the blocks; this thread waits, polls (Ctrl-C) and keeps the watchdog.
  L.running = workers;
  WorkerPool::get().submit(&L, workers);
  const auto start = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(L.done_mutex);
    while (L.running > 0) {
      if (L.done_cv.wait_for(lock, std::chrono::milliseconds(kPollMilliseconds), [&] { return L.running == 0; }))
        break;
      int reason = L.stop.load();
      if (reason == kNoStop) {
        lock.unlock();
        if (options.poll && options.poll(options.poll_context) != 0) reason = kStopInterrupted;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (reason == kNoStop && options.timeout_seconds > 0 && elapsed > options.timeout_seconds) reason = kStopTimeout;
        lock.lock();
        if (reason != kNoStop) L.stop.store(reason);
      }
      if (reason != kNoStop)  // again every poll until every worker has left its block
        for (pthread_t t : L.active) pthread_kill(t, cancel_signal());
    }
  }
  if (L.stop.load() != kNoStop && !L.failed.load()) {  // every worker was between blocks
    *error = stop_text(L) + " in kernel '" + kernel.name + "'";
    return 1;
  }
  if (L.failed.load()) {  // a worker that abandoned a running CUDA thread says which
    *error = L.error;
    return 1;
  }
  return 0;
}

}  // namespace emu

// Device-side assert(): stop the launch and report instead of aborting the process.
extern "C" __attribute__((visibility("hidden"))) void __assert_fail(const char* expr, const char* file,
                                                                    unsigned int line, const char*) noexcept {
  if (::emu::current_worker) {
    std::string m = std::string("device assertion '") + expr + "' failed";
    ::emu::abort_kernel(m.c_str(), file, int(line));
  }
  fprintf(stderr, "%s:%u: assertion '%s' failed\n", file, line, expr);
  abort();
}
