// SPDX-License-Identifier: GPL-2.0
/*
 * vmtier_idle: the /dev/vmtier_idle interface. Open (CAP_SYS_ADMIN), choose a
 * target process with VMTIER_IDLE_IOC_SET_TARGET, then read with the file
 * offset set to a virtual address; the result is the stream that
 * vmtier_idle_enc.c writes. See kmod/README.md.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/smp.h>
#include <linux/ktime.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/sched/coredump.h>
#include <linux/sched/signal.h>
#include <asm/tlbflush.h>
#include "vmtier_idle.h"

struct vti_file {
	struct mutex lock;		/* serializes ioctls and reads */
	struct mm_struct *mm;		/* mmgrab'ed: pins the struct only */
	struct pid *tgid;		/* the target's thread group */
	cpumask_var_t cpus;		/* CPUs a flush interrupts */
	struct vti_kvm kvm;		/* .kvm set in TDP mode */
	unsigned int flags;
	unsigned long limit;		/* reads stop here (exclusive) */
	struct vmtier_idle_info info;
	bool gone;			/* target dropped: its VM was closed */
	bool flush_pending;		/* A bits cleared since the last flush */
	u8 *buf;
};

static void vti_drop_target(struct vti_file *f)
{
	vti_kvm_release(&f->kvm);
	if (f->mm)
		mmdrop(f->mm);
	f->mm = NULL;
	put_pid(f->tgid);
	f->tgid = NULL;
	f->info.mode = VMTIER_IDLE_MODE_NONE;
}

/*
 * Whoever holds the fd must be allowed to inspect @task now, as ptrace would
 * decide for reading (PTRACE_MODE_READ_FSCREDS; ptrace_may_access() is not
 * exported): CAP_SYS_ADMIN, checked again here because an fd outlives a
 * privilege drop and can be passed to another process, and either the same
 * uids and gids as the target or CAP_SYS_PTRACE over it. A target that is
 * not dumpable (setuid, prctl) needs CAP_SYS_PTRACE too. LSM hooks are not
 * consulted (security_ptrace_access_check() is not exported either).
 */
static int vti_may_inspect(struct file *file, struct task_struct *task,
			   struct mm_struct *mm)
{
	const struct cred *cred = current_cred(), *tcred;
	bool same, ok;

	if (!file_ns_capable(file, &init_user_ns, CAP_SYS_ADMIN) ||
	    !capable(CAP_SYS_ADMIN))
		return -EPERM;
	rcu_read_lock();
	tcred = __task_cred(task);
	same = uid_eq(cred->fsuid, tcred->euid) &&
	       uid_eq(cred->fsuid, tcred->suid) &&
	       uid_eq(cred->fsuid, tcred->uid) &&
	       gid_eq(cred->fsgid, tcred->egid) &&
	       gid_eq(cred->fsgid, tcred->sgid) &&
	       gid_eq(cred->fsgid, tcred->gid);
	ok = same || ns_capable(tcred->user_ns, CAP_SYS_PTRACE);
	rcu_read_unlock();
	if (ok && get_dumpable(mm) != SUID_DUMP_USER)
		ok = ns_capable(mm->user_ns, CAP_SYS_PTRACE);
	return ok ? 0 : -EPERM;
}

static long vti_set_target(struct file *file, struct vti_file *f,
			   void __user *arg)
{
	struct vmtier_idle_target t;
	struct task_struct *task;
	struct mm_struct *mm = NULL;
	struct vti_kvm kvm = { };
	long ret = 0;

	if (copy_from_user(&t, arg, sizeof(t)))
		return -EFAULT;
	if (t.pid <= 0 || t.reserved[0] || t.reserved[1] ||
	    (t.flags & ~VMTIER_IDLE_F_ALL) ||
	    ((t.flags & VMTIER_IDLE_F_KVM) && (t.flags & VMTIER_IDLE_F_PROCESS)))
		return -EINVAL;
#ifndef CONFIG_PAGE_IDLE_FLAG
	/*
	 * Without the page-idle flags (Debian's 6.1), folio_set_young() is an
	 * empty stub: a cleared A bit would be the kernel's only record of the
	 * access, lost to reclaim and khugepaged. Refuse rather than do that.
	 */
	if (t.flags & VMTIER_IDLE_F_CLEAR)
		return -EOPNOTSUPP;
#endif

	rcu_read_lock();
	task = get_pid_task(find_vpid(t.pid), PIDTYPE_PID);
	rcu_read_unlock();
	if (!task)
		return -ESRCH;
	/* Kernel threads have no user address space to scan. */
	if (task->flags & PF_KTHREAD) {
		ret = -EINVAL;
		goto out;
	}
	task_lock(task);
	mm = task->mm;
	if (mm)
		mmgrab(mm);
	task_unlock(task);
	if (!mm) {
		ret = -ESRCH;	/* exiting */
		goto out;
	}
	ret = vti_may_inspect(file, task, mm);
	if (ret)
		goto out;
	if (!(t.flags & VMTIER_IDLE_F_PROCESS)) {
		ret = vti_kvm_find(task, mm, &kvm);
		if (ret && (t.flags & VMTIER_IDLE_F_KVM))
			goto out;
		ret = 0;
	}

	vti_drop_target(f);
	f->gone = false;
	f->flush_pending = false;
	f->mm = mm;
	mm = NULL;
	f->tgid = get_pid(task_tgid(task));
	f->kvm = kvm;
	f->flags = t.flags;
	memset(&f->info, 0, sizeof(f->info));
	f->info.abi_version = VMTIER_IDLE_ABI_VERSION;
	f->info.mode = !kvm.kvm ? VMTIER_IDLE_MODE_PROCESS :
		       kvm.ept ? VMTIER_IDLE_MODE_EPT : VMTIER_IDLE_MODE_NPT;
out:
	if (mm)
		mmdrop(mm);
	put_task_struct(task);
	return ret;
}

static long vti_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vti_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret = 0;
	u64 limit;

	mutex_lock(&f->lock);
	switch (cmd) {
	case VMTIER_IDLE_IOC_SET_TARGET:
		ret = vti_set_target(file, f, uarg);
		break;
	case VMTIER_IDLE_IOC_SET_LIMIT:
		if (copy_from_user(&limit, uarg, sizeof(limit)))
			ret = -EFAULT;
		else if (!limit || !PAGE_ALIGNED(limit))
			ret = -EINVAL;
		else
			f->limit = min_t(u64, limit, TASK_SIZE_MAX);
		break;
	case VMTIER_IDLE_IOC_GET_INFO:
		f->info.abi_version = VMTIER_IDLE_ABI_VERSION;
		if (copy_to_user(uarg, &f->info, sizeof(f->info)))
			ret = -EFAULT;
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&f->lock);
	return ret;
}

/*
 * Runs on each CPU of mm_cpumask(mm): only one that has @info loaded (running
 * it, or lazily after it) holds its translations under the live PCID. A CR3
 * reload drops that PCID's entries and nothing else; with PTI the user PCID
 * would survive it, so there a full flush.
 */
static void vti_flush_local(void *info)
{
	if (current->active_mm != info)
		return;
	if (boot_cpu_has(X86_FEATURE_PTI))
		__flush_tlb_all();
	else
		write_cr3(__read_cr3());
}

/*
 * TLB policy: after a pass that cleared A bits, make every CPU drop the
 * target's cached translations, so the next access sets the bit again
 * instead of hitting a stale TLB entry. flush_tlb_mm_range() is not exported
 * to modules, so: bump the mm's TLB generation, which makes a CPU that
 * switched away (keeping the entries under a cached PCID) or runs it lazily
 * flush when it switches to it again, then interrupt only the CPUs running
 * one of the target's threads now. The bump is a full barrier before the
 * on_cpu reads; a thread scheduled after them reads the new generation.
 */
static void vti_flush_mm(struct vti_file *f)
{
	struct task_struct *leader, *t;

	/* inc_mm_tlb_gen(), which asm/tlbflush.h hides from modules. */
	atomic64_inc_return(&f->mm->context.tlb_gen);
	cpumask_clear(f->cpus);
	rcu_read_lock();
	leader = pid_task(f->tgid, PIDTYPE_TGID);
	if (leader) {
		for_each_thread(leader, t)
			if (t->mm == f->mm && READ_ONCE(t->on_cpu))
				cpumask_set_cpu(task_cpu(t), f->cpus);
	}
	rcu_read_unlock();
	/*
	 * No waiting for the IPIs: the next read that relies on the flush
	 * comes a scan interval later, so the scanner need not spin until
	 * every CPU has answered. The IPI code copies the mask, and
	 * vti_flush_local only compares the mm pointer, never follows it.
	 */
	if (!cpumask_empty(f->cpus))
		on_each_cpu_cond_mask(NULL, vti_flush_local, f->mm, false,
				      f->cpus);
}

static ssize_t vti_read(struct file *file, char __user *ubuf, size_t count,
			loff_t *ppos)
{
	struct vti_file *f = file->private_data;
	unsigned long start = *ppos, end;
	struct mm_struct *mm;
	struct vti_scan s = { };
	u64 t0;
	ssize_t ret;
	size_t len;

	if (count < VTI_MIN_READ || *ppos < 0 || !PAGE_ALIGNED(start))
		return -EINVAL;
	if (mutex_lock_interruptible(&f->lock))
		return -ERESTARTSYS;
	mm = f->mm;
	if (!mm) {
		ret = f->gone ? -ESRCH : -EINVAL;	/* dropped, or never set */
		goto unlock;
	}
	end = min(f->limit, mm->task_size);
	if (start >= end) {
		ret = 0;
		goto unlock;
	}
	/* The target exited (or is exiting): its address space is gone. */
	if (!mmget_not_zero(mm)) {
		ret = -ESRCH;
		goto unlock;
	}
	/*
	 * The VMM closed its VM: drop it now rather than keep its vCPUs, memory
	 * and mmu notifier alive for a scan of holes.
	 */
	if (f->kvm.kvm && vti_kvm_orphaned(&f->kvm)) {
		mmput(mm);
		vti_drop_target(f);
		f->gone = true;
		ret = -ESRCH;
		goto unlock;
	}
	vti_enc_init(&s.enc, f->buf, min_t(size_t, count, VTI_BUF_SIZE), start);
	s.flags = f->flags;
	s.start = start;
	s.budget = VTI_READ_BUDGET;
	t0 = ktime_get_ns();
	if (f->kvm.kvm) {
		ret = vti_walk_tdp(&f->kvm, start, end, &s);
	} else {
		ret = mmap_read_lock_killable(mm);
		if (!ret) {
			ret = vti_walk_mm(mm, start, end, &s);
			mmap_read_unlock(mm);
		}
	}
	/*
	 * One flush per pass, not per read: when a read reaches the limit (the
	 * end of the range being scanned) and something was cleared since the
	 * last flush. A translation cached meanwhile only delays the next A bit
	 * until the end of this pass; on a 1 TiB VM a flush per 1 GiB read
	 * would make every vCPU exit 1024 times per pass.
	 */
	f->flush_pending |= s.cleared > 0;
	if (!ret && f->flush_pending && s.next >= end &&
	    !(s.flags & VMTIER_IDLE_F_NOFLUSH)) {
		if (f->kvm.kvm)
			vti_kvm_flush(&f->kvm);
		else
			vti_flush_mm(f);
		f->flush_pending = false;
		f->info.tlb_flushes++;
	}
	f->info.walk_ns += ktime_get_ns() - t0;
	f->info.cleared += s.cleared;
	f->info.lock_takes += s.lock_takes;
	mmput(mm);
	if (ret)
		goto unlock;
	len = vti_enc_finish(&s.enc, s.next);
	if (s.enc.broken) {
		ret = -EIO;
		goto unlock;
	}
	if (copy_to_user(ubuf, f->buf, len)) {
		ret = -EFAULT;
		goto unlock;
	}
	*ppos = s.next;
	f->info.reads++;
	ret = len;
unlock:
	mutex_unlock(&f->lock);
	return ret;
}

static int vti_open(struct inode *inode, struct file *file)
{
	struct vti_file *f;

	/* Reading (and clearing) another process's A bits is an admin act. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->buf = kvmalloc(VTI_BUF_SIZE, GFP_KERNEL);
	if (!f->buf || !zalloc_cpumask_var(&f->cpus, GFP_KERNEL)) {
		kvfree(f->buf);
		kfree(f);
		return -ENOMEM;
	}
	mutex_init(&f->lock);
	f->limit = TASK_SIZE_MAX;
	f->info.abi_version = VMTIER_IDLE_ABI_VERSION;
	file->private_data = f;
	return 0;
}

static int vti_release(struct inode *inode, struct file *file)
{
	struct vti_file *f = file->private_data;

	vti_drop_target(f);
	free_cpumask_var(f->cpus);
	kvfree(f->buf);
	mutex_destroy(&f->lock);
	kfree(f);
	return 0;
}

static const struct file_operations vti_fops = {
	.owner = THIS_MODULE,
	.open = vti_open,
	.release = vti_release,
	.read = vti_read,
	.llseek = default_llseek,
	.unlocked_ioctl = vti_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice vti_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vmtier_idle",
	.fops = &vti_fops,
	.mode = 0600,
};

static int __init vti_init(void)
{
	return misc_register(&vti_dev);
}

static void __exit vti_exit(void)
{
	misc_deregister(&vti_dev);
}

module_init(vti_init);
module_exit(vti_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("vmtier");
MODULE_DESCRIPTION("Accessed-bit scanner for process page tables and KVM TDP tables");
