/* Status messages and version. */
#include "pyrnn.h"

const char *pyrnn_status_message(int status)
{
    switch (status) {
    case PYRNN_OK: return "ok";
    case PYRNN_ERR_SIZE: return "a size is out of range";
    case PYRNN_ERR_NULL: return "a required pointer is NULL";
    case PYRNN_ERR_LENGTHS: return "a sequence length is outside 1..T";
    case PYRNN_ERR_ARGUMENT: return "a flag or count is out of range";
    default: return "unknown status";
    }
}

const char *pyrnn_version(void) { return "0.1.0"; }
