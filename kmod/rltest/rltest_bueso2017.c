// SPDX-License-Identifier: GPL-2.0
/* The bueso2017 flavour of rltop's test range lock (see rltest.h). */
#define RLTEST_BUESO2017 1
#define RLTEST_NAME "bueso2017"
#include "rltest.h"
