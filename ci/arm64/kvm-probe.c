/*
 * kvm-probe: a minimal check that KVM works inside the emulated arm64 CI VM (ci/arm64/probe.sh
 * builds it with aarch64-linux-gnu-gcc -static and runs it through ci/arm64/run-in-vm.sh).
 *
 * It creates a VM with one vCPU, puts three instructions at guest-physical 0x10000
 *     mov x0, #0x42 ; str x0, [x1] ; b .
 * with x1 = 0x9000000 (not backed by any memory slot), runs the vCPU and expects a
 * KVM_EXIT_MMIO write of 0x42 to 0x9000000. Exits 0 on success, 1 on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_BASE 0x10000ULL
#define GUEST_SIZE 0x10000ULL
#define MMIO_ADDR 0x9000000ULL

static void fail(const char *what)
{
	fprintf(stderr, "kvm-probe: FAIL: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "kvm-probe: FAIL: %s\n", what);
		exit(1);
	}
}

/* The KVM_{GET,SET}_ONE_REG id of a 64-bit field of struct kvm_regs. */
#define CORE_REG(field)                                                         \
	(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |                  \
	 (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

static void set_reg(int vcpu, uint64_t id, uint64_t value, const char *name)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)&value };
	if (ioctl(vcpu, KVM_SET_ONE_REG, &reg) < 0)
		fail(name);
}

static uint64_t get_reg(int vcpu, uint64_t id, const char *name)
{
	uint64_t value = 0;
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)&value };
	if (ioctl(vcpu, KVM_GET_ONE_REG, &reg) < 0)
		fail(name);
	return value;
}

int main(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("open /dev/kvm");

	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	printf("kvm-probe: KVM_GET_API_VERSION = %d\n", api);
	check(api == KVM_API_VERSION, "KVM API version is not 12");

	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");
	int ipa = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
	printf("kvm-probe: KVM_CREATE_VM ok (max IPA size %d bits)\n", ipa);

	int nisv = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_NISV_TO_USER);
	int one_reg = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ONE_REG);
	printf("kvm-probe: KVM_CAP_ARM_NISV_TO_USER (177) = %d, KVM_CAP_ONE_REG (70) = %d\n", nisv,
	       one_reg);
	check(one_reg > 0, "KVM_CAP_ONE_REG is not supported");

	struct kvm_vcpu_init init;
	memset(&init, 0, sizeof(init));
	if (ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		fail("KVM_ARM_PREFERRED_TARGET");
	printf("kvm-probe: KVM_ARM_PREFERRED_TARGET = %u\n", init.target);

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU");
	if (ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
		fail("KVM_ARM_VCPU_INIT");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap kvm_run");
	printf("kvm-probe: vCPU created and initialised (PSTATE after reset 0x%llx)\n",
	       (unsigned long long)get_reg(vcpu, CORE_REG(regs.pstate), "KVM_GET_ONE_REG pstate"));

	uint32_t *mem = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap guest memory");
	mem[0] = 0xd2800840; /* mov x0, #0x42 */
	mem[1] = 0xf9000020; /* str x0, [x1] */
	mem[2] = 0x14000000; /* b . */
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = GUEST_BASE,
		.memory_size = GUEST_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");

	set_reg(vcpu, CORE_REG(regs.pc), GUEST_BASE, "KVM_SET_ONE_REG pc");
	set_reg(vcpu, CORE_REG(regs.regs[1]), MMIO_ADDR, "KVM_SET_ONE_REG x1");
	/* EL1h, D, A, I and F masked. */
	set_reg(vcpu, CORE_REG(regs.pstate), 0x3c5, "KVM_SET_ONE_REG pstate");

	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		fail("KVM_RUN");
	printf("kvm-probe: KVM_RUN exit_reason = %u\n", run->exit_reason);
	check(run->exit_reason == KVM_EXIT_MMIO, "exit reason is not KVM_EXIT_MMIO (6)");

	uint64_t data = 0;
	memcpy(&data, run->mmio.data, run->mmio.len <= 8 ? run->mmio.len : 8);
	printf("kvm-probe: MMIO %s of %u bytes at 0x%llx, data 0x%llx\n",
	       run->mmio.is_write ? "write" : "read", run->mmio.len,
	       (unsigned long long)run->mmio.phys_addr, (unsigned long long)data);
	check(run->mmio.is_write, "MMIO exit is not a write");
	check(run->mmio.phys_addr == MMIO_ADDR, "MMIO address is not 0x9000000");
	check(run->mmio.len == 8, "MMIO access is not 8 bytes");
	check(data == 0x42, "MMIO data is not 0x42");

	printf("kvm-probe: PASS (guest PC 0x%llx)\n",
	       (unsigned long long)get_reg(vcpu, CORE_REG(regs.pc), "KVM_GET_ONE_REG pc"));
	return 0;
}
