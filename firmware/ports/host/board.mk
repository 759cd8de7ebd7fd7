# host: this Linux machine, with TFLM's linux target (g++). Timing is wall-clock nanoseconds.
PORT_SRCS := $(PORTS)/host/port.cc
PORT_DEFINES :=
PORT_INCLUDES :=
PORT_LDFLAGS :=
