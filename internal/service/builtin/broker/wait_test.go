package broker

import "time"

func waitABit() { time.Sleep(250 * time.Millisecond) }
