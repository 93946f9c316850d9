// model1: umbrella header.
#pragma once

#include "model1/decode.h"
#include "model1/error.h"
#include "model1/kv_cache.h"
#include "model1/kv_format.h"
#include "model1/prefill.h"
#include "model1/tensor.h"
#include "model1/version.h"
