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
#include <asm/tlbflush.h>
#include "vmtier_idle.h"

struct vti_file {
	struct mutex lock;		/* serializes ioctls and reads */
	struct mm_struct *mm;		/* mmgrab'ed: pins the struct only */
	struct vti_kvm kvm;		/* .kvm set in TDP mode */
	unsigned int flags;
	unsigned long limit;		/* reads stop here (exclusive) */
	struct vmtier_idle_info info;
	u8 *buf;
};

static void vti_drop_target(struct vti_file *f)
{
	vti_kvm_release(&f->kvm);
	if (f->mm)
		mmdrop(f->mm);
	f->mm = NULL;
	f->info.mode = VMTIER_IDLE_MODE_NONE;
}

static long vti_set_target(struct vti_file *f, void __user *arg)
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
	if (!(t.flags & VMTIER_IDLE_F_PROCESS)) {
		ret = vti_kvm_find(task, mm, &kvm);
		if (ret && (t.flags & VMTIER_IDLE_F_KVM))
			goto out;
		ret = 0;
	}

	vti_drop_target(f);
	f->mm = mm;
	mm = NULL;
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
		ret = vti_set_target(f, uarg);
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

static void vti_flush_local(void *unused)
{
	__flush_tlb_all();
}

/*
 * TLB policy: after a read that cleared A bits, one flush of the CPUs that may
 * cache the target's translations, so the next access sets the bit again
 * instead of hitting a stale TLB entry. flush_tlb_mm_range() is not exported
 * to modules, so this is a full local flush on each CPU of mm_cpumask, once
 * per read (a read covers up to VTI_READ_BUDGET entries), never per page.
 */
static void vti_flush_mm(struct mm_struct *mm)
{
	on_each_cpu_cond_mask(NULL, vti_flush_local, NULL, true,
			      mm_cpumask(mm));
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
		return -EINTR;
	mm = f->mm;
	if (!mm) {
		ret = -EINVAL;	/* no target set */
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
	vti_enc_init(&s.enc, f->buf, min_t(size_t, count, VTI_BUF_SIZE), start);
	s.flags = f->flags;
	s.budget = VTI_READ_BUDGET;
	t0 = ktime_get_ns();
	if (f->kvm.kvm) {
		ret = vti_walk_tdp(&f->kvm, start, end, &s);
		if (!ret && s.cleared && !(s.flags & VMTIER_IDLE_F_NOFLUSH)) {
			vti_kvm_flush(&f->kvm);
			f->info.tlb_flushes++;
		}
	} else {
		ret = mmap_read_lock_killable(mm);
		if (!ret) {
			ret = vti_walk_mm(mm, start, end, &s);
			mmap_read_unlock(mm);
		}
		if (!ret && s.cleared && !(s.flags & VMTIER_IDLE_F_NOFLUSH)) {
			vti_flush_mm(mm);
			f->info.tlb_flushes++;
		}
	}
	f->info.walk_ns += ktime_get_ns() - t0;
	f->info.cleared += s.cleared;
	mmput(mm);
	if (ret)
		goto unlock;
	len = vti_enc_finish(&s.enc, s.next);
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
	if (!f->buf) {
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
