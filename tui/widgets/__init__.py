"""Line-API widgets that draw what their owner hands down and report picks as messages."""
