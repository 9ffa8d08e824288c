package logx

const helperEnv = "LOGX_TEST_HELPER"

func helperMain() int { return 0 }
