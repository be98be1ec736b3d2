// SPDX-License-Identifier: GPL-2.0
/* The bueso2019 flavour of rltop's test range lock (see rltest.h). */
#define RLTEST_BUESO2019 1
#define RLTEST_NAME "bueso2019"
#include "rltest.h"
