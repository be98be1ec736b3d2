// SPDX-License-Identifier: GPL-2.0
/*
 * rltest: a test module for rltop's range-lock profiles.
 *
 * Each rltest_<flavour>.c defines RLTEST_<FLAVOUR> and includes this file,
 * giving one module per flavour of docs/kernel.md ("Range-lock APIs"), with that flavour's
 * exact function names and the struct offsets rltop reads (start/last of the
 * range, task, blocking count, sequence). The lock itself follows the
 * blocking-count rule of those patches:
 *
 *  - a new lock counts every overlapping node already in the tree that it
 *    conflicts with (held or waiting), inserts itself and sleeps until its
 *    count is 0 (for reader/writer flavours a reader counts only writers);
 *  - unlock (or a cancelled wait) removes the node and decrements every later
 *    conflicting overlapping node, waking those that reach 0;
 *  - the tree is the kernel's interval tree (Kara, Bueso) or a list (Lustre's
 *    interval list), under a spinlock taken irqsave: unlock may come from a
 *    workqueue, like a DIO completion.
 *
 * Writing a pattern name to /sys/module/rltest_<flavour>/parameters/run
 * runs it synchronously from several kthreads:
 *
 *  clean    per-page lockers, a DIO-like locker unlocked from a workqueue,
 *           whole-range punch-like locks, faults taking mmap_lock (of the
 *           writer's mm) then the range lock, trylocks and one cancelled
 *           interruptible wait where the flavour has them;
 *  crowd    64 kthreads wait at once for one range behind a holder, more
 *           than a kretprobe's default maxactive (max(10, 2 x CPUs)); half
 *           of them unlock from a soft hrtimer (softirq, on top of
 *           whichever task runs, rltop's own thread included);
 *  mmap     (bug) a task takes mmap_lock while holding a range lock;
 *  overlap  (bug) the lock grants a range overlapping a held one;
 *  leak     (bug) a task exits without one unlock;
 *  lostwake (bug) an unlock forgets to wake its waiters: every waiter hangs
 *           with nothing held, for 3 s, until the module wakes them (run it
 *           in the background: the recording ends during the hang);
 *  abba     (bug) two tasks deadlock ABBA; a signal breaks it 200 ms in by
 *           cancelling one interruptible wait (flavours that have one);
 *  latequeue a task's lock call sleeps 10 ms between its entry and its
 *           insertion into the tree (as a preemption at might_sleep() on
 *           a voluntary-preemption kernel would), and a later request
 *           enters the queue first and is rightly served first.
 *
 * The operations performed (calls of the lock API) are counted and readable
 * at /sys/module/rltest_<flavour>/parameters/ops, and printed to the kernel
 * log after each run.
 */
#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/interval_tree.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/mmap_lock.h>
#include <linux/workqueue.h>
#include <linux/completion.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/atomic.h>
#include <linux/string.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/version.h>

#if defined(RLTEST_BUESO2017) || defined(RLTEST_BUESO2019)
#define RL_RW 1
#else
#define RL_RW 0
#endif

/* ---- layouts (x86-64 offsets of docs/kernel.md, "Range-lock APIs") ---- */

#if defined(RLTEST_LUSTRE)
struct range_lock_tree {
	struct list_head head;	/* Lustre keeps an interval list */
	spinlock_t lock;
	u64 seq;
	wait_queue_head_t wq;
};

struct range_lock {
	__u64 rl_start;			/* @0: first page */
	__u64 rl_end;			/* @8: last page (inclusive) */
	struct list_head rl_list;	/* @16 */
	unsigned long rl_pad[2];	/* @32 */
	struct task_struct *rl_task;	/* @48 */
	unsigned int rl_blocking;	/* @56 */
	__u64 rl_sequence;		/* @64 */
};
#define TREE range_lock_tree
#define LOCK range_lock
#define L_START(l) ((l)->rl_start)
#define L_LAST(l) ((l)->rl_end)
#define L_TASK(l) ((l)->rl_task)
#define L_BLOCKING(l) ((l)->rl_blocking)
#define L_SEQ(l) ((l)->rl_sequence)
static_assert(offsetof(struct range_lock, rl_task) == 48);
static_assert(offsetof(struct range_lock, rl_sequence) == 64);
#else

#if defined(RLTEST_BUESO2017)
#define TREE range_rwlock_tree
#define LOCK range_rwlock
#else
#define TREE range_lock_tree
#define LOCK range_lock
#endif

struct TREE {
	struct rb_root_cached root;
	spinlock_t lock;
	u64 seq;
	wait_queue_head_t wq;
};

struct LOCK {
	struct interval_tree_node node;	/* start@24, last@32 */
#if RL_RW
	struct task_struct *waiter;	/* @48, bit 0 = reader */
#else
	struct task_struct *task;	/* @48 */
#endif
	unsigned int blocking_ranges;	/* @56 */
	u64 seqnum;			/* @64 (Bueso's; Kara has none, rltest keeps
					   it for the overlap bug's book-keeping) */
};
#define L_START(l) ((l)->node.start)
#define L_LAST(l) ((l)->node.last)
#if RL_RW
#define L_TASK(l) ((l)->waiter)
#else
#define L_TASK(l) ((l)->task)
#endif
#define L_BLOCKING(l) ((l)->blocking_ranges)
#define L_SEQ(l) ((l)->seqnum)
static_assert(offsetof(struct LOCK, node.start) == 24);
static_assert(offsetof(struct LOCK, node.last) == 32);
static_assert(offsetof(struct LOCK, blocking_ranges) == 56);
static_assert(offsetof(struct LOCK, seqnum) == 64);
#endif

/* ---- counters: every call of the lock API ---- */

static atomic_t n_lock, n_unlock, n_acquired, n_failed, n_cancelled, n_downgrade;

static void reset_counters(void)
{
	atomic_set(&n_lock, 0);
	atomic_set(&n_unlock, 0);
	atomic_set(&n_acquired, 0);
	atomic_set(&n_failed, 0);
	atomic_set(&n_cancelled, 0);
	atomic_set(&n_downgrade, 0);
}

/* The lock the overlap bug grants without counting what it overlaps. */
static struct LOCK *bug_grant;
/* The latequeue pattern's lock: its call sleeps before it enters the tree. */
static struct LOCK *late_lock;

/* ---- the tree ---- */

#if defined(RLTEST_LUSTRE)
static void tree_init(struct TREE *t) { INIT_LIST_HEAD(&t->head); }
static void tree_insert(struct TREE *t, struct LOCK *l) { list_add_tail(&l->rl_list, &t->head); }
static void tree_remove(struct TREE *t, struct LOCK *l) { list_del_init(&l->rl_list); }
#define for_each_overlap(n, t, s, e) \
	list_for_each_entry(n, &(t)->head, rl_list) \
		if (n->rl_start <= (e) && (s) <= n->rl_end)
#else
static void tree_init(struct TREE *t) { t->root = RB_ROOT_CACHED; }
static void tree_insert(struct TREE *t, struct LOCK *l) { interval_tree_insert(&l->node, &t->root); }
static void tree_remove(struct TREE *t, struct LOCK *l) { interval_tree_remove(&l->node, &t->root); }
#define for_each_overlap(n, t, s, e) \
	for (struct interval_tree_node *_it = interval_tree_iter_first(&(t)->root, (s), (e)); \
	     _it && ((n = container_of(_it, struct LOCK, node)), 1); \
	     _it = interval_tree_iter_next(_it, (s), (e)))
#endif

static void rl_tree_init(struct TREE *t)
{
	tree_init(t);
	spin_lock_init(&t->lock);
	init_waitqueue_head(&t->wq);
	t->seq = 0;
}

static bool is_reader(struct LOCK *l)
{
	return RL_RW && ((unsigned long)L_TASK(l) & 1);
}

static bool conflicts(struct LOCK *a, struct LOCK *b)
{
	return !(is_reader(a) && is_reader(b));
}

/* Decrements the later conflicting overlapping nodes; tree lock held. */
static void release_later(struct TREE *t, struct LOCK *l)
{
	struct LOCK *n;

	for_each_overlap(n, t, L_START(l), L_LAST(l)) {
		if (n == bug_grant || L_SEQ(n) < L_SEQ(l) || !conflicts(l, n))
			continue;
		if (!WARN_ON_ONCE(L_BLOCKING(n) == 0))
			L_BLOCKING(n)--;
	}
}

enum wait_kind { WAIT_PLAIN, WAIT_INTERRUPTIBLE, WAIT_KILLABLE, WAIT_TRY };

#if defined(RLTEST_LUSTRE)
void range_unlock(struct range_lock_tree *tree, struct range_lock *lock);
#endif

/* The lock: 0 when granted (1 for a granted trylock), -EINTR when the wait
 * was interrupted (the node is removed again; Lustre's -ERESTARTSYS), 0 for
 * a failed trylock. */
static int do_lock(struct TREE *t, struct LOCK *l, bool reader, enum wait_kind how)
{
	unsigned long flags;
	unsigned int blocking = 0;
	struct LOCK *n;
	int ret;

	atomic_inc(&n_lock);
	/* Between entry and insertion, where real lock functions call
	 * might_sleep(): a preemption there delays the insertion. */
	if (l == READ_ONCE(late_lock))
		msleep(10);
	spin_lock_irqsave(&t->lock, flags);
	L_TASK(l) = (struct task_struct *)((unsigned long)current | (reader ? 1 : 0));
	L_SEQ(l) = ++t->seq;
	if (l != bug_grant) {
		for_each_overlap(n, t, L_START(l), L_LAST(l))
			if (conflicts(l, n))
				blocking++;
	}
	if (how == WAIT_TRY && blocking) {
		spin_unlock_irqrestore(&t->lock, flags);
		atomic_inc(&n_failed);
		return 0;
	}
	L_BLOCKING(l) = blocking;
	tree_insert(t, l);
	spin_unlock_irqrestore(&t->lock, flags);
	if (how == WAIT_TRY) {
		atomic_inc(&n_acquired);
		return 1;
	}
	if (how == WAIT_PLAIN) {
		wait_event(t->wq, READ_ONCE(L_BLOCKING(l)) == 0);
		atomic_inc(&n_acquired);
		return 0;
	}
	if (how == WAIT_KILLABLE)
		ret = wait_event_killable(t->wq, READ_ONCE(L_BLOCKING(l)) == 0);
	else
		ret = wait_event_interruptible(t->wq, READ_ONCE(L_BLOCKING(l)) == 0);
	if (!ret) {
		atomic_inc(&n_acquired);
		return 0;
	}
	spin_lock_irqsave(&t->lock, flags);
	if (L_BLOCKING(l) == 0) {
		/* Granted while the signal came: keep it. */
		spin_unlock_irqrestore(&t->lock, flags);
		atomic_inc(&n_acquired);
		return 0;
	}
#if defined(RLTEST_LUSTRE)
	/* Lustre's cancel (lustre/obdclass/range_lock.c): range_lock() hands
	 * its own never-granted lock to range_unlock(), then returns
	 * -ERESTARTSYS. The module counts that unlock, as rltop sees it. */
	spin_unlock_irqrestore(&t->lock, flags);
	range_unlock(t, l);
	atomic_inc(&n_cancelled);
	return -ERESTARTSYS;
#else
	tree_remove(t, l);
	release_later(t, l);
	spin_unlock_irqrestore(&t->lock, flags);
	wake_up_all(&t->wq);
	atomic_inc(&n_cancelled);
	return -EINTR;
#endif
}

/* Bug switch of the lostwake pattern: the next unlock wakes nobody. */
static bool lost_wakeup;

static void do_unlock(struct TREE *t, struct LOCK *l)
{
	unsigned long flags;

	atomic_inc(&n_unlock);
	spin_lock_irqsave(&t->lock, flags);
	tree_remove(t, l);
	release_later(t, l);
	spin_unlock_irqrestore(&t->lock, flags);
	if (!READ_ONCE(lost_wakeup))
		wake_up_all(&t->wq);
}

/* ---- the flavour's API, with its exact names ---- */

#if defined(RLTEST_KARA2013)
noinline void range_lock_tree_init(struct range_lock_tree *tree) { rl_tree_init(tree); }
EXPORT_SYMBOL_GPL(range_lock_tree_init);
noinline void range_lock_init(struct range_lock *lock, unsigned long start, unsigned long end)
{
	memset(lock, 0, sizeof(*lock));
	lock->node.start = start;
	lock->node.last = end;
}
EXPORT_SYMBOL_GPL(range_lock_init);
noinline void range_lock(struct range_lock_tree *tree, struct range_lock *lock) { do_lock(tree, lock, false, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(range_lock);
noinline void range_unlock(struct range_lock_tree *tree, struct range_lock *lock) { do_unlock(tree, lock); }
EXPORT_SYMBOL_GPL(range_unlock);

#define T_INIT(t) range_lock_tree_init(t)
#define L_INIT(l, s, e) range_lock_init(l, s, e)
#define LOCK_W(t, l) range_lock(t, l)
#define LOCK_R(t, l) range_lock(t, l)
#define UNLOCK_W(t, l) range_unlock(t, l)
#define UNLOCK_R(t, l) range_unlock(t, l)
#define HAVE_TRY 0
#define HAVE_INTR 0

#elif defined(RLTEST_LUSTRE)
noinline void range_lock_tree_init(struct range_lock_tree *tree) { rl_tree_init(tree); }
EXPORT_SYMBOL_GPL(range_lock_tree_init);
/* Lustre takes bytes and stores pages. */
noinline void range_lock_init(struct range_lock *lock, __u64 start, __u64 end)
{
	memset(lock, 0, sizeof(*lock));
	INIT_LIST_HEAD(&lock->rl_list);
	lock->rl_start = start >> PAGE_SHIFT;
	lock->rl_end = end >> PAGE_SHIFT;
}
EXPORT_SYMBOL_GPL(range_lock_init);
/* Lustre's range_lock waits interruptibly and returns -ERESTARTSYS when a signal cancels it. */
noinline int range_lock(struct range_lock_tree *tree, struct range_lock *lock) { return do_lock(tree, lock, false, WAIT_INTERRUPTIBLE); }
EXPORT_SYMBOL_GPL(range_lock);
noinline void range_unlock(struct range_lock_tree *tree, struct range_lock *lock) { do_unlock(tree, lock); }
EXPORT_SYMBOL_GPL(range_unlock);

#define T_INIT(t) range_lock_tree_init(t)
#define L_INIT(l, s, e) range_lock_init(l, (__u64)(s) << PAGE_SHIFT, ((__u64)(e) << PAGE_SHIFT) | (PAGE_SIZE - 1))
#define LOCK_W(t, l) WARN_ON(range_lock(t, l))
#define LOCK_R(t, l) WARN_ON(range_lock(t, l))
#define LOCK_INTR(t, l) range_lock(t, l)
#define UNLOCK_W(t, l) range_unlock(t, l)
#define UNLOCK_R(t, l) range_unlock(t, l)
#define HAVE_TRY 0
#define HAVE_INTR 1

#else /* Bueso 2017 (range_rwlock) and 2018-2019 (range_lock) */
#if defined(RLTEST_BUESO2017)
noinline void range_rwlock_tree_init(struct range_rwlock_tree *tree) { rl_tree_init(tree); }
EXPORT_SYMBOL_GPL(range_rwlock_tree_init);
noinline void range_rwlock_init(struct range_rwlock *lock, unsigned long start, unsigned long last)
{
	memset(lock, 0, sizeof(*lock));
	lock->node.start = start;
	lock->node.last = last;
}
EXPORT_SYMBOL_GPL(range_rwlock_init);
#define T_INIT(t) range_rwlock_tree_init(t)
#define L_INIT(l, s, e) range_rwlock_init(l, s, e)
#else
noinline void range_lock_tree_init(struct range_lock_tree *tree) { rl_tree_init(tree); }
EXPORT_SYMBOL_GPL(range_lock_tree_init);
noinline void range_lock_init(struct range_lock *lock, unsigned long start, unsigned long last)
{
	memset(lock, 0, sizeof(*lock));
	lock->node.start = start;
	lock->node.last = last;
}
EXPORT_SYMBOL_GPL(range_lock_init);
noinline void range_lock_init_full(struct range_lock *lock) { range_lock_init(lock, 0, ULONG_MAX); }
EXPORT_SYMBOL_GPL(range_lock_init_full);
noinline bool range_is_locked(struct range_lock_tree *tree, struct range_lock *lock)
{
	unsigned long flags;
	struct LOCK *n;
	bool ret = false;

	spin_lock_irqsave(&tree->lock, flags);
	for_each_overlap(n, tree, L_START(lock), L_LAST(lock))
		if (n != lock)
			ret = true;
	spin_unlock_irqrestore(&tree->lock, flags);
	return ret;
}
EXPORT_SYMBOL_GPL(range_is_locked);
#define T_INIT(t) range_lock_tree_init(t)
#define L_INIT(l, s, e) range_lock_init(l, s, e)
#endif

noinline void range_read_lock(struct TREE *tree, struct LOCK *lock) { do_lock(tree, lock, true, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(range_read_lock);
noinline int range_read_lock_interruptible(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, true, WAIT_INTERRUPTIBLE); }
EXPORT_SYMBOL_GPL(range_read_lock_interruptible);
noinline int range_read_lock_killable(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, true, WAIT_KILLABLE); }
EXPORT_SYMBOL_GPL(range_read_lock_killable);
noinline int range_read_trylock(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, true, WAIT_TRY); }
EXPORT_SYMBOL_GPL(range_read_trylock);
noinline void range_read_unlock(struct TREE *tree, struct LOCK *lock) { do_unlock(tree, lock); }
EXPORT_SYMBOL_GPL(range_read_unlock);
noinline void range_write_lock(struct TREE *tree, struct LOCK *lock) { do_lock(tree, lock, false, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(range_write_lock);
noinline int range_write_lock_interruptible(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, false, WAIT_INTERRUPTIBLE); }
EXPORT_SYMBOL_GPL(range_write_lock_interruptible);
noinline int range_write_lock_killable(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, false, WAIT_KILLABLE); }
EXPORT_SYMBOL_GPL(range_write_lock_killable);
noinline int range_write_trylock(struct TREE *tree, struct LOCK *lock) { return do_lock(tree, lock, false, WAIT_TRY); }
EXPORT_SYMBOL_GPL(range_write_trylock);
noinline void range_write_unlock(struct TREE *tree, struct LOCK *lock) { do_unlock(tree, lock); }
EXPORT_SYMBOL_GPL(range_write_unlock);
/* Downgrade: the writer becomes a reader; later readers it blocked go. */
noinline void range_downgrade_write(struct TREE *tree, struct LOCK *lock)
{
	unsigned long flags;
	struct LOCK *n;

	atomic_inc(&n_downgrade);
	spin_lock_irqsave(&tree->lock, flags);
	for_each_overlap(n, tree, L_START(lock), L_LAST(lock)) {
		if (n == lock || L_SEQ(n) < L_SEQ(lock) || !is_reader(n))
			continue;
		if (!WARN_ON_ONCE(L_BLOCKING(n) == 0))
			L_BLOCKING(n)--;
	}
	lock->waiter = (struct task_struct *)((unsigned long)lock->waiter | 1);
	spin_unlock_irqrestore(&tree->lock, flags);
	wake_up_all(&tree->wq);
}
EXPORT_SYMBOL_GPL(range_downgrade_write);

#if defined(RLTEST_BUESO2019)
/* The lockdep variants (Bueso 2019 with CONFIG_DEBUG_LOCK_ALLOC; without it
 * they are macros for the plain ones). */
noinline void range_read_lock_nested(struct TREE *tree, struct LOCK *lock, int subclass) { do_lock(tree, lock, true, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(range_read_lock_nested);
noinline void range_write_lock_nested(struct TREE *tree, struct LOCK *lock, int subclass) { do_lock(tree, lock, false, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(range_write_lock_nested);
noinline int range_write_lock_killable_nested(struct TREE *tree, struct LOCK *lock, int subclass) { return do_lock(tree, lock, false, WAIT_KILLABLE); }
EXPORT_SYMBOL_GPL(range_write_lock_killable_nested);
noinline void _range_write_lock_nest_lock(struct TREE *tree, struct LOCK *lock, void *nest) { do_lock(tree, lock, false, WAIT_PLAIN); }
EXPORT_SYMBOL_GPL(_range_write_lock_nest_lock);
#define HAVE_NESTED 1
#endif

#define LOCK_W(t, l) range_write_lock(t, l)
#define LOCK_R(t, l) range_read_lock(t, l)
#define LOCK_INTR(t, l) range_write_lock_interruptible(t, l)
#define UNLOCK_W(t, l) range_write_unlock(t, l)
#define UNLOCK_R(t, l) range_read_unlock(t, l)
#define HAVE_TRY 1
#define HAVE_INTR 1
#define HAVE_DOWNGRADE 1
#endif
#ifndef HAVE_DOWNGRADE
#define HAVE_DOWNGRADE 0
#endif
#ifndef HAVE_NESTED
#define HAVE_NESTED 0
#endif

/* ---- the patterns ---- */

static int iters = 200;
module_param(iters, int, 0644);
MODULE_PARM_DESC(iters, "iterations of each clean-pattern thread");

#define PAGES 64
/*
 * The tree lives in a file-like object next to a pointer to its inode, as
 * Kara's lives in struct address_space next to ->host: a profile with a
 * [tree_inode] section (kmod/rltest/kara2013-tree.toml) lets rltop link the
 * tree to that inode with a `tree` event. The inode is that of the file
 * named by the `host` parameter, opened for the run.
 */
struct rltest_file {
	struct inode *host;	/* @0 */
	struct TREE tree;	/* @8 */
};
static_assert(offsetof(struct rltest_file, tree) == 8);
static struct rltest_file rf;

static char *host = "/init";
module_param(host, charp, 0644);
MODULE_PARM_DESC(host, "file whose inode the tree belongs to during a run");
static struct mm_struct *run_mm;
static struct workqueue_struct *dio_wq;

struct worker {
	struct task_struct *task;
	struct completion done;
	int id;
	void (*fn)(struct worker *w);
};

static int worker_main(void *arg)
{
	struct worker *w = arg;

	w->fn(w);
	complete(&w->done);
	return 0;
}

/* Per-page locks (buffered IO, page-cache insertion), with trylocks. */
static void pager(struct worker *w)
{
	struct LOCK l;
	int i;

	for (i = 0; i < iters; i++) {
		unsigned long p = (i * 7 + w->id * 13) % PAGES;

		L_INIT(&l, p, p);
#if HAVE_TRY
		if (i % 4 == 3) {
			if (i % 8 == 3 ? range_read_trylock(&rf.tree, &l) : range_write_trylock(&rf.tree, &l)) {
				if (i % 8 == 3)
					range_read_unlock(&rf.tree, &l);
				else
					range_write_unlock(&rf.tree, &l);
			}
			continue;
		}
		if (i % 2) {
			LOCK_R(&rf.tree, &l);
			UNLOCK_R(&rf.tree, &l);
			continue;
		}
#endif
#if HAVE_NESTED
		if (i % 8 == 2) {
			/* Each lockdep variant in turn. */
			switch ((i / 8) % 4) {
			case 0:
				range_read_lock_nested(&rf.tree, &l, 1);
				range_read_unlock(&rf.tree, &l);
				break;
			case 1:
				range_write_lock_nested(&rf.tree, &l, 1);
				range_write_unlock(&rf.tree, &l);
				break;
			case 2:
				if (!range_write_lock_killable_nested(&rf.tree, &l, 1))
					range_write_unlock(&rf.tree, &l);
				break;
			default:
				_range_write_lock_nest_lock(&rf.tree, &l, NULL);
				range_write_unlock(&rf.tree, &l);
			}
			continue;
		}
#endif
		LOCK_W(&rf.tree, &l);
		UNLOCK_W(&rf.tree, &l);
		if (i % 16 == 0)
			cond_resched();
	}
}

struct dio {
	struct work_struct work;
	struct LOCK l;
	struct completion done;
};

static void dio_end(struct work_struct *work)
{
	struct dio *d = container_of(work, struct dio, work);

	UNLOCK_W(&rf.tree, &d->l);
	complete(&d->done);
}

/* DIO: lock each bio's pages at submit, unlock at completion (a workqueue). */
static void dio_submitter(struct worker *w)
{
	struct dio *d = kzalloc(sizeof(*d), GFP_KERNEL);
	int i;

	if (!d)
		return;
	for (i = 0; i < iters / 4; i++) {
		unsigned long p = (i * 4) % PAGES;

		L_INIT(&d->l, p, p + 3);
		init_completion(&d->done);
		INIT_WORK(&d->work, dio_end);
		LOCK_W(&rf.tree, &d->l);
		queue_work(dio_wq, &d->work);
		wait_for_completion(&d->done);
	}
	kfree(d);
}

/* Punch hole / truncate: whole-range locks. */
static void puncher(struct worker *w)
{
	struct LOCK l;
	int i;

	for (i = 0; i < iters / 8; i++) {
		L_INIT(&l, 0, PAGES - 1);
		LOCK_W(&rf.tree, &l);
		/* Sleeps holding it: the others queue behind. */
		usleep_range(20, 50);
		UNLOCK_W(&rf.tree, &l);
		msleep(1);
	}
}

/* Page faults: mmap_lock, then the range lock of the page. */
static void faulter(struct worker *w)
{
	struct LOCK l;
	int i;

	for (i = 0; i < iters / 2; i++) {
		unsigned long p = (i * 5) % PAGES;

		mmap_read_lock(run_mm);
		L_INIT(&l, p, p);
		LOCK_R(&rf.tree, &l);
		UNLOCK_R(&rf.tree, &l);
		mmap_read_unlock(run_mm);
	}
}

#if HAVE_INTR
/* One interruptible wait, cancelled by a signal while a holder blocks it. */
static struct completion cancel_holding, cancel_done;

static void cancel_waiter(struct worker *w)
{
	struct LOCK l;

	allow_signal(SIGINT);
	wait_for_completion(&cancel_holding);
#if HAVE_TRY
	/* The holder has the whole range: these trylocks fail. */
	L_INIT(&l, 30, 31);
	if (range_write_trylock(&rf.tree, &l))
		range_write_unlock(&rf.tree, &l);
	if (range_read_trylock(&rf.tree, &l))
		range_read_unlock(&rf.tree, &l);
#endif
	L_INIT(&l, 10, 20);
	if (LOCK_INTR(&rf.tree, &l) == 0)
		UNLOCK_W(&rf.tree, &l);
	flush_signals(current);
	complete(&cancel_done);
}

static void cancel_holder(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 0, PAGES - 1);
	LOCK_W(&rf.tree, &l);
	complete(&cancel_holding);
	msleep(50);
	/* The waiter is the next worker (see run_pattern). */
	send_sig(SIGINT, w[1].task, 1);
	wait_for_completion(&cancel_done);
	UNLOCK_W(&rf.tree, &l);
}
#endif

#if HAVE_DOWNGRADE
/*
 * A downgrade while a reader, a writer and a reader queue behind the
 * holder, in that order: the first reader goes at the downgrade, the
 * writer waits for both readers, the last reader for the writer (FIFO).
 */
static struct completion dg_go[3];

static void dg_holder(struct worker *w)
{
	struct LOCK l;
	int i;

	L_INIT(&l, 40, 47);
	LOCK_W(&rf.tree, &l);
	for (i = 0; i < 3; i++) {
		complete(&dg_go[i]);
		/* Let it enter the tree before the next one asks. */
		msleep(10);
	}
	range_downgrade_write(&rf.tree, &l);
	msleep(10);
	UNLOCK_R(&rf.tree, &l);
}

static void dg_waiter(struct worker *w, int k, bool reader, unsigned long s, unsigned long e)
{
	struct LOCK l;

	wait_for_completion(&dg_go[k]);
	L_INIT(&l, s, e);
	if (reader) {
		LOCK_R(&rf.tree, &l);
		msleep(1);
		UNLOCK_R(&rf.tree, &l);
	} else {
		LOCK_W(&rf.tree, &l);
		msleep(1);
		UNLOCK_W(&rf.tree, &l);
	}
}

static void dg_read1(struct worker *w) { dg_waiter(w, 0, true, 40, 47); }
static void dg_write(struct worker *w) { dg_waiter(w, 1, false, 40, 47); }
static void dg_read2(struct worker *w) { dg_waiter(w, 2, true, 42, 43); }
#endif

#if HAVE_INTR
/* Bug: an ABBA deadlock, broken by a signal to B's interruptible wait. */
static struct completion abba_a_held, abba_b_held;

static void abba_a(struct worker *w)
{
	struct LOCK x, y;

	L_INIT(&x, 0, 4);
	LOCK_W(&rf.tree, &x);
	complete_all(&abba_a_held);
	wait_for_completion(&abba_b_held);
	L_INIT(&y, 10, 14);
	LOCK_W(&rf.tree, &y);	/* waits for B, until B gives up */
	UNLOCK_W(&rf.tree, &y);
	UNLOCK_W(&rf.tree, &x);
}

static void abba_signal(struct worker *w)
{
	wait_for_completion(&abba_a_held);
	wait_for_completion(&abba_b_held);
	msleep(200);
	/* B is the next worker (see run_pattern). */
	send_sig(SIGINT, w[1].task, 1);
}

static void abba_b(struct worker *w)
{
	struct LOCK x, y;

	allow_signal(SIGINT);
	L_INIT(&y, 10, 14);
	LOCK_W(&rf.tree, &y);
	complete_all(&abba_b_held);
	wait_for_completion(&abba_a_held);
	/* Let A ask for y first. */
	msleep(20);
	L_INIT(&x, 0, 4);
	if (LOCK_INTR(&rf.tree, &x) == 0)
		UNLOCK_W(&rf.tree, &x);
	flush_signals(current);
	UNLOCK_W(&rf.tree, &y);
}
#endif

/* Bug: a lost wakeup. The holder's unlock wakes nobody; the waiters,
 * queued behind it and each other, all sleep with nothing held. */
static struct completion lw_held;

static void lw_holder(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 0, PAGES - 1);
	LOCK_W(&rf.tree, &l);
	complete_all(&lw_held);
	/* Let the waiters queue. */
	msleep(50);
	WRITE_ONCE(lost_wakeup, true);
	UNLOCK_W(&rf.tree, &l);
	WRITE_ONCE(lost_wakeup, false);
	/* The hang; then the module ends it, so that the pattern returns. */
	msleep(3000);
	wake_up_all(&rf.tree.wq);
}

static void lw_waiter(struct worker *w)
{
	struct LOCK l;

	wait_for_completion(&lw_held);
	msleep(5 * w->id);
	L_INIT(&l, 4 * w->id, 4 * w->id + 20);
	LOCK_W(&rf.tree, &l);
	UNLOCK_W(&rf.tree, &l);
}

/* Correct: a request that enters the queue after a later one is served
 * after it. The holder keeps both waiting; "late" asks first and sleeps
 * before its insertion, "early" asks 3 ms later and enters at once. */
static struct completion lq_held, lq_late_asking;

static void lq_holder(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 50, 55);
	LOCK_W(&rf.tree, &l);
	complete_all(&lq_held);
	/* Until both are queued (late enters 10 ms after its call). */
	msleep(30);
	UNLOCK_W(&rf.tree, &l);
}

static void lq_late(struct worker *w)
{
	struct LOCK l;

	wait_for_completion(&lq_held);
	L_INIT(&l, 50, 55);
	WRITE_ONCE(late_lock, &l);
	complete(&lq_late_asking);
	LOCK_W(&rf.tree, &l);
	WRITE_ONCE(late_lock, NULL);
	UNLOCK_W(&rf.tree, &l);
}

static void lq_early(struct worker *w)
{
	struct LOCK l;

	wait_for_completion(&lq_late_asking);
	msleep(3);
	L_INIT(&l, 50, 55);
	LOCK_W(&rf.tree, &l);
	msleep(1);
	UNLOCK_W(&rf.tree, &l);
}

/* Bug: mmap_lock while holding a range lock. */
static void bug_mmap(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 3, 5);
	LOCK_W(&rf.tree, &l);
	mmap_read_lock(run_mm);
	mmap_read_unlock(run_mm);
	UNLOCK_W(&rf.tree, &l);
}

/* Bug: a grant overlapping a held range. */
static struct completion ovl_held, ovl_done;

static void bug_overlap_holder(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 0, 9);
	LOCK_W(&rf.tree, &l);
	complete(&ovl_held);
	wait_for_completion(&ovl_done);
	UNLOCK_W(&rf.tree, &l);
}

static void bug_overlap_grantee(struct worker *w)
{
	struct LOCK l;

	wait_for_completion(&ovl_held);
	L_INIT(&l, 5, 6);
	bug_grant = &l;
	LOCK_W(&rf.tree, &l);
	UNLOCK_W(&rf.tree, &l);
	bug_grant = NULL;
	complete(&ovl_done);
}

/* Bug: a task exits with a lock it never unlocks. */
static void bug_leak(struct worker *w)
{
	/* Never unlocked, so never freed: it stays in this run's tree. */
	struct LOCK *l = kzalloc(sizeof(*l), GFP_KERNEL);
	struct LOCK l2;

	if (!l)
		return;
	L_INIT(l, 0, 0);
	LOCK_W(&rf.tree, l);
	L_INIT(&l2, 1, 1);
	LOCK_W(&rf.tree, &l2);
	UNLOCK_W(&rf.tree, &l2);
}

/* ---- crowd: more sleeping waiters than return-probe instances ---- */

#define CROWD 64
static struct completion crowd_go;

struct crowd_unlock {
	struct hrtimer timer;
	struct LOCK *l;
	struct completion done;
};
static struct crowd_unlock crowd_units[CROWD + 1];

static enum hrtimer_restart crowd_timer_fn(struct hrtimer *t)
{
	struct crowd_unlock *u = container_of(t, struct crowd_unlock, timer);

	/* Softirq context (HRTIMER_MODE_REL_SOFT). */
	UNLOCK_W(&rf.tree, u->l);
	complete(&u->done);
	return HRTIMER_NORESTART;
}

static void crowd_holder(struct worker *w)
{
	struct LOCK l;

	L_INIT(&l, 0, PAGES - 1);
	LOCK_W(&rf.tree, &l);
	complete_all(&crowd_go);
	/* Until every member is in its lock call (n_lock counts the calls). */
	while (atomic_read(&n_lock) < CROWD + 1)
		msleep(1);
	msleep(20);
	UNLOCK_W(&rf.tree, &l);
}

static void crowd_member(struct worker *w)
{
	struct crowd_unlock *u = &crowd_units[w->id];
	struct LOCK l;

	wait_for_completion(&crowd_go);
	L_INIT(&l, 0, PAGES - 1);
	LOCK_W(&rf.tree, &l);
	if (w->id % 2) {
		u->l = &l;
		init_completion(&u->done);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
		hrtimer_setup(&u->timer, crowd_timer_fn, CLOCK_MONOTONIC, HRTIMER_MODE_REL_SOFT);
#else
		hrtimer_init(&u->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_SOFT);
		u->timer.function = crowd_timer_fn;
#endif
		hrtimer_start(&u->timer, ns_to_ktime(50 * NSEC_PER_USEC), HRTIMER_MODE_REL_SOFT);
		wait_for_completion(&u->done);
		/* Waits until the callback has returned: `l` is on this stack. */
		hrtimer_cancel(&u->timer);
	} else {
		usleep_range(20, 50);
		UNLOCK_W(&rf.tree, &l);
	}
}

#define MAX_WORKERS (CROWD + 1)

static int run_workers(void (*const fns[])(struct worker *), const char *const names[], int n)
{
	static struct worker w[MAX_WORKERS];
	int i, started = 0;

	for (i = 0; i < n; i++) {
		w[i].id = i;
		w[i].fn = fns[i];
		init_completion(&w[i].done);
		w[i].task = kthread_create(worker_main, &w[i], "rltest-%s", names[i]);
		if (IS_ERR(w[i].task))
			break;
		started++;
	}
	for (i = 0; i < started; i++)
		wake_up_process(w[i].task);
	for (i = 0; i < started; i++)
		wait_for_completion(&w[i].done);
	return started == n ? 0 : -ENOMEM;
}

static char last_run[16] = "none";

static int run_pattern(const char *name)
{
	struct file *hf;
	int ret;

	T_INIT(&rf.tree);
	reset_counters();
	run_mm = get_task_mm(current);
	if (!run_mm)
		return -EINVAL;
	hf = filp_open(host, O_RDONLY, 0);
	rf.host = IS_ERR(hf) ? NULL : file_inode(hf);
	if (!strcmp(name, "clean")) {
		static void (*const fns[])(struct worker *) = {
			pager, pager, dio_submitter, puncher, faulter,
#if HAVE_INTR
			cancel_holder, cancel_waiter,
#endif
#if HAVE_DOWNGRADE
			dg_holder, dg_read1, dg_write, dg_read2,
#endif
		};
		static const char *const names[] = {
			"page0", "page1", "dio", "punch", "fault",
#if HAVE_INTR
			"cancel-hold", "cancel-wait",
#endif
#if HAVE_DOWNGRADE
			"dg-hold", "dg-read1", "dg-write", "dg-read2",
#endif
		};
#if HAVE_INTR
		init_completion(&cancel_holding);
		init_completion(&cancel_done);
#endif
#if HAVE_DOWNGRADE
		init_completion(&dg_go[0]);
		init_completion(&dg_go[1]);
		init_completion(&dg_go[2]);
#endif
		ret = run_workers(fns, names, ARRAY_SIZE(fns));
	} else if (!strcmp(name, "crowd")) {
		static void (*fns[CROWD + 1])(struct worker *);
		static const char *names[CROWD + 1];
		int i;

		fns[0] = crowd_holder;
		names[0] = "crowd-hold";
		for (i = 1; i <= CROWD; i++) {
			fns[i] = crowd_member;
			names[i] = "crowd";
		}
		init_completion(&crowd_go);
		ret = run_workers(fns, names, CROWD + 1);
	} else if (!strcmp(name, "mmap")) {
		static void (*const fns[])(struct worker *) = { bug_mmap };
		static const char *const names[] = { "bug-mmap" };

		ret = run_workers(fns, names, 1);
	} else if (!strcmp(name, "overlap")) {
		static void (*const fns[])(struct worker *) = { bug_overlap_holder, bug_overlap_grantee };
		static const char *const names[] = { "bug-hold", "bug-overlap" };

		init_completion(&ovl_held);
		init_completion(&ovl_done);
		ret = run_workers(fns, names, 2);
	} else if (!strcmp(name, "leak")) {
		static void (*const fns[])(struct worker *) = { bug_leak };
		static const char *const names[] = { "bug-leak" };

		ret = run_workers(fns, names, 1);
	} else if (!strcmp(name, "lostwake")) {
		static void (*const fns[])(struct worker *) = { lw_holder, lw_waiter, lw_waiter, lw_waiter };
		static const char *const names[] = { "lw-hold", "lw-wait", "lw-wait", "lw-wait" };

		init_completion(&lw_held);
		ret = run_workers(fns, names, 4);
	} else if (!strcmp(name, "latequeue")) {
		static void (*const fns[])(struct worker *) = { lq_holder, lq_late, lq_early };
		static const char *const names[] = { "lq-hold", "lq-late", "lq-early" };

		init_completion(&lq_held);
		init_completion(&lq_late_asking);
		ret = run_workers(fns, names, 3);
#if HAVE_INTR
	} else if (!strcmp(name, "abba")) {
		static void (*const fns[])(struct worker *) = { abba_a, abba_signal, abba_b };
		static const char *const names[] = { "abba-a", "abba-signal", "abba-b" };

		init_completion(&abba_a_held);
		init_completion(&abba_b_held);
		ret = run_workers(fns, names, 3);
#endif
	} else {
		ret = -EINVAL;
	}
	mmput(run_mm);
	run_mm = NULL;
	rf.host = NULL;
	if (!IS_ERR(hf))
		filp_close(hf, NULL);
	if (!ret) {
		strscpy(last_run, name, sizeof(last_run));
		pr_info("rltest_%s: %s: locks=%d unlocks=%d acquired=%d failed=%d cancelled=%d downgrades=%d\n",
			RLTEST_NAME, name, atomic_read(&n_lock), atomic_read(&n_unlock),
			atomic_read(&n_acquired), atomic_read(&n_failed),
			atomic_read(&n_cancelled), atomic_read(&n_downgrade));
	}
	return ret;
}

static int run_set(const char *val, const struct kernel_param *kp)
{
	char name[16];

	strscpy(name, val, sizeof(name));
	strim(name);
	return run_pattern(name);
}

static int run_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", last_run);
}

static const struct kernel_param_ops run_ops = { .set = run_set, .get = run_get };
module_param_cb(run, &run_ops, NULL, 0644);
MODULE_PARM_DESC(run, "write clean|crowd|mmap|overlap|leak|lostwake|abba|latequeue to run a pattern; reads the last run");

static int ops_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "locks=%d unlocks=%d acquired=%d failed=%d cancelled=%d downgrades=%d\n",
			  atomic_read(&n_lock), atomic_read(&n_unlock), atomic_read(&n_acquired),
			  atomic_read(&n_failed), atomic_read(&n_cancelled), atomic_read(&n_downgrade));
}

static const struct kernel_param_ops ops_ops = { .get = ops_get };
module_param_cb(ops, &ops_ops, NULL, 0444);
MODULE_PARM_DESC(ops, "lock API calls of the last run");

static int __init rltest_init(void)
{
	dio_wq = alloc_workqueue("rltest-dio", WQ_UNBOUND, 0);
	if (!dio_wq)
		return -ENOMEM;
	T_INIT(&rf.tree);
	pr_info("rltest_%s: loaded\n", RLTEST_NAME);
	return 0;
}

static void __exit rltest_exit(void)
{
	destroy_workqueue(dio_wq);
}

module_init(rltest_init);
module_exit(rltest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rltop test range lock (" RLTEST_NAME " flavour)");
