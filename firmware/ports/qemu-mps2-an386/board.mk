# qemu-mps2-an386: Cortex-M4F, 25 MHz (QEMU's MPS2 SYSCLK), semihosting output.
PORT_SRCS := $(PORTS)/common/cortex_m_startup.c $(PORTS)/common/systick.cc $(PORTS)/common/qemu_port.cc
PORT_DEFINES := -DEDGEDISTILL_CPU_CLOCK_HZ=25000000
PORT_INCLUDES := -I$(PORTS)/common
PORT_LDFLAGS := -nostartfiles --specs=nano.specs --specs=nosys.specs -L$(PORTS)/common -T$(PORTS)/qemu-mps2-an386/linker.ld
