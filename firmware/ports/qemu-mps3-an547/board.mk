# qemu-mps3-an547: Cortex-M55 with MVE, 32 MHz (QEMU's AN547 SYSCLK), semihosting output.
PORT_SRCS := $(PORTS)/common/cortex_m_startup.c $(PORTS)/common/systick.cc $(PORTS)/common/qemu_port.cc
PORT_DEFINES := -DEDGEDISTILL_CPU_CLOCK_HZ=32000000
PORT_INCLUDES := -I$(PORTS)/common
PORT_LDFLAGS := -nostartfiles --specs=nano.specs --specs=nosys.specs -L$(PORTS)/common -T$(PORTS)/qemu-mps3-an547/linker.ld
