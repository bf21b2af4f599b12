# protocol.init refuses what the firmware refuses.
import protocol

for kwargs in ({"max_payload": 10}, {"max_payload": 1 << 20}, {"lock_interval_ms": 5}):
    try:
        protocol.init(**kwargs)
        print("accepted", kwargs)
    except RuntimeError as e:
        print("refused", kwargs, e)
protocol.init(max_payload=256, ack=False)
print("init ok")
print("active", protocol.is_active())
while True:
    import time
    time.sleep_ms(20)
