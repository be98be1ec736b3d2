// SPDX-License-Identifier: GPL-2.0
/* The kara2013 flavour of rltop's test range lock (see rltest.h). */
#define RLTEST_KARA2013 1
#define RLTEST_NAME "kara2013"
#include "rltest.h"
