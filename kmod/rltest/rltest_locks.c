// SPDX-License-Identifier: GPL-2.0
/*
 * rltop's test module for mainline's page-cache locks (issue 14): a file's
 * inode->i_rwsem and mapping->invalidate_lock, taken the way the kernel's
 * filesystems take them (inode_lock(), filemap_invalidate_lock(): inline
 * wrappers of down_write()), and in two buggy ways.
 *
 * A user process asks for a pattern by writing "<pattern> <fd> <addr>" to
 * /sys/module/rltest_locks/parameters/run; the pattern runs in that
 * process's context, on the file open at <fd>:
 *
 *   fault      filemap_invalidate_lock(), then copy_to_user() of a page to
 *              <addr> (a fresh anonymous page of the caller, never a
 *              mapping of the same file: that would really deadlock), then
 *              the unlock. A page fault under invalidate_lock, which ranks
 *              below mmap_lock (mmap_lock -> invalidate_lock -> folio lock):
 *              the inversion that per-VMA locks hide from mmap_lock events.
 *   order-good inode_lock() then filemap_invalidate_lock(): the documented
 *              order (i_rwsem -> invalidate_lock, include/linux/fs.h).
 *   order-bad  filemap_invalidate_lock() then inode_lock(): the wrong order.
 *              Run by another thread after order-good returned (parameter
 *              writes are serialised by the kernel's param lock), so the
 *              pair is an ABBA inversion that never really deadlocks here.
 *
 * /sys/module/rltest_locks/parameters/ops counts what ran:
 * "faults=N good=N bad=N".
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

static unsigned long faults, goods, bads;
static char last_run[16] = "none";

static noinline int rltest_fault(struct file *f, unsigned long addr)
{
	struct address_space *mapping = f->f_mapping;
	char *buf = kmalloc(PAGE_SIZE, GFP_KERNEL);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	memset(buf, 0xa5, PAGE_SIZE);
	filemap_invalidate_lock(mapping);
	if (copy_to_user((void __user *)addr, buf, PAGE_SIZE))
		ret = -EFAULT;
	filemap_invalidate_unlock(mapping);
	kfree(buf);
	if (!ret)
		faults++;
	return ret;
}

static noinline void rltest_order(struct file *f, bool good)
{
	struct inode *inode = file_inode(f);
	struct address_space *mapping = inode->i_mapping;

	if (good) {
		inode_lock(inode);
		filemap_invalidate_lock(mapping);
		filemap_invalidate_unlock(mapping);
		inode_unlock(inode);
		goods++;
	} else {
		filemap_invalidate_lock(mapping);
		inode_lock(inode);
		inode_unlock(inode);
		filemap_invalidate_unlock(mapping);
		bads++;
	}
}

static int run_set(const char *val, const struct kernel_param *kp)
{
	char pattern[16];
	unsigned int fd;
	unsigned long addr;
	struct file *f;
	int ret = 0;

	if (sscanf(val, "%15s %u %lu", pattern, &fd, &addr) != 3)
		return -EINVAL;
	f = fget(fd);
	if (!f)
		return -EBADF;
	if (!strcmp(pattern, "fault"))
		ret = rltest_fault(f, addr);
	else if (!strcmp(pattern, "order-good"))
		rltest_order(f, true);
	else if (!strcmp(pattern, "order-bad"))
		rltest_order(f, false);
	else
		ret = -EINVAL;
	fput(f);
	if (!ret)
		strscpy(last_run, pattern, sizeof(last_run));
	pr_info("rltest_locks: %s fd %u: %d (faults=%lu good=%lu bad=%lu)\n",
		pattern, fd, ret, faults, goods, bads);
	return ret;
}

static int run_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", last_run);
}

static const struct kernel_param_ops run_ops = { .set = run_set, .get = run_get };
module_param_cb(run, &run_ops, NULL, 0644);
MODULE_PARM_DESC(run, "write \"fault|order-good|order-bad FD ADDR\" to run a pattern");

static int ops_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "faults=%lu good=%lu bad=%lu\n", faults, goods, bads);
}

static const struct kernel_param_ops ops_ops = { .get = ops_get };
module_param_cb(ops, &ops_ops, NULL, 0444);
MODULE_PARM_DESC(ops, "patterns run");

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rltop test module: page-cache lock patterns");
