// SPDX-License-Identifier: GPL-2.0
/* The lustre flavour of rltop's test range lock (see rltest.h). */
#define RLTEST_LUSTRE 1
#define RLTEST_NAME "lustre"
#include "rltest.h"
