# nucleo-f446re: STM32F446RE Cortex-M4F on the 16 MHz HSI clock; USART2 (PA2) -> ST-LINK VCP.
# UNTESTED ON HARDWARE: built in this workplace, never run on a board.
PORT_SRCS := $(PORTS)/common/cortex_m_startup.c $(PORTS)/common/systick.cc $(PORTS)/nucleo-f446re/port.cc
PORT_DEFINES := -DEDGEDISTILL_CPU_CLOCK_HZ=16000000
PORT_INCLUDES := -I$(PORTS)/common
PORT_LDFLAGS := -nostartfiles --specs=nano.specs --specs=nosys.specs -L$(PORTS)/common -T$(PORTS)/nucleo-f446re/linker.ld
