// The plain Java client (Debian's libzookeeper-java, ZooKeeper 3.8) and Curator 5.4's
// recipes (libcurator-*-java) against one connect string: test_java_client.py compiles this
// with javac and runs it against zabkeeper standalone, a zabkeeper 3-server ensemble and
// Apache ZooKeeper 3.8. Each check prints "ok <name>" or throws (the process then exits 1
// with the stack trace); the last line is "all ok".

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.queue.SimpleDistributedQueue;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class ZkClients {
    static String connect;
    static String base;

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        connect = args[0];
        base = "/java-" + Long.toHexString(System.nanoTime());
        plainClient();
        CuratorFramework[] clients = new CuratorFramework[3];
        for (int i = 0; i < clients.length; i++) {
            clients[i] = CuratorFrameworkFactory.newClient(connect, 10000, 10000,
                    new ExponentialBackoffRetry(100, 10));
            clients[i].start();
            check(clients[i].getZookeeperClient().blockUntilConnectedOrTimedOut(), "curator connects");
        }
        clients[0].create().forPath(base);
        curatorCrudAndTransaction(clients[0]);
        lock(clients);
        leaderLatch(clients);
        queue(clients);
        counters(clients);
        cache(clients);
        barrier(clients);
        discovery(clients);
        for (CuratorFramework c : clients) {
            c.close();
        }
        System.out.println("all ok");
    }

    // The plain client: create2's Stat, null data, a data watch, cversion counting creates
    // and deletes, a multi whose container create answers with a Stat, BadVersion.
    static void plainClient() throws Exception {
        BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(connect, 10000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
        });
        check(connected.await(20, TimeUnit.SECONDS), "plain client connects");
        String root = base + "-plain";
        Stat st = new Stat();
        String created = zk.create(root, b("v0"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT, st);
        check(created.equals(root), "create returns the path");
        check(st.getCzxid() > 0 && st.getVersion() == 0 && st.getDataLength() == 2, "create2 stat " + st);

        zk.create(root + "/null", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        check(zk.getData(root + "/null", false, null) == null, "null data reads back as null");

        zk.getData(root, events::add, null);
        zk.setData(root, b("v1"), 0);
        WatchedEvent e = events.poll(10, TimeUnit.SECONDS);
        check(e != null && e.getType() == Watcher.Event.EventType.NodeDataChanged
                && e.getPath().equals(root), "data watch fires: " + e);
        try {
            zk.setData(root, b("v2"), 0);
            throw new AssertionError("setData with a stale version succeeded");
        } catch (KeeperException.BadVersionException expected) {
        }

        for (int i = 0; i < 4; i++) {
            zk.create(root + "/c" + i, b("x"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        }
        zk.delete(root + "/c0", -1);
        zk.delete(root + "/c1", -1);
        Stat parent = zk.exists(root, false);
        // the "null" child, 4 creates and 2 deletes: ZooKeeper counts every child change
        check(parent.getCversion() == 7 && parent.getNumChildren() == 3, "cversion " + parent);

        List<OpResult> results = zk.multi(List.of(
                Op.create(root + "/container", b("c"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER),
                Op.create(root + "/m", b("m"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.setData(root + "/m", b("mm"), 0)));
        OpResult.CreateResult container = (OpResult.CreateResult) results.get(0);
        check(container.getStat() != null, "a container create in a multi answers with a Stat");
        check(container.getStat().getEphemeralOwner() == 0, "a container has no ephemeral owner");
        check(((OpResult.SetDataResult) results.get(2)).getStat().getVersion() == 1, "multi setData stat");

        String eph = zk.create(root + "/e-", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL_SEQUENTIAL);
        check(eph.matches(".*/e-\\d{10}"), "sequential name " + eph);
        check(zk.exists(eph, false).getEphemeralOwner() == zk.getSessionId(), "ephemeral owner");
        zk.close();
        System.out.println("ok plain-client");
    }

    static void curatorCrudAndTransaction(CuratorFramework c) throws Exception {
        String p = base + "/crud";
        c.create().forPath(p, b("hello"));
        check(new String(c.getData().forPath(p), StandardCharsets.UTF_8).equals("hello"), "curator getData");
        CuratorOp a = c.transactionOp().create().forPath(p + "/a", b("a"));
        CuratorOp s = c.transactionOp().setData().forPath(p, b("bye"));
        Collection<CuratorTransactionResult> rs = c.transaction().forOperations(a, s);
        check(rs.size() == 2, "transaction results");
        check(new String(c.getData().forPath(p), StandardCharsets.UTF_8).equals("bye"), "transaction applied");
        c.delete().deletingChildrenIfNeeded().forPath(p);
        check(c.checkExists().forPath(p) == null, "deleted");
        System.out.println("ok curator-crud-transaction");
    }

    // InterProcessMutex: 3 clients x 2 threads take the lock 10 times each; never two holders.
    static void lock(CuratorFramework[] clients) throws Exception {
        String path = base + "/lock";
        AtomicInteger holders = new AtomicInteger();
        AtomicInteger maxHolders = new AtomicInteger();
        AtomicInteger taken = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<?>> fs = new ArrayList<>();
        for (int t = 0; t < 6; t++) {
            CuratorFramework c = clients[t % clients.length];
            fs.add(pool.submit(() -> {
                InterProcessMutex m = new InterProcessMutex(c, path);
                for (int i = 0; i < 10; i++) {
                    check(m.acquire(30, TimeUnit.SECONDS), "lock acquired");
                    try {
                        int h = holders.incrementAndGet();
                        maxHolders.accumulateAndGet(h, Math::max);
                        Thread.sleep(1);
                        taken.incrementAndGet();
                        holders.decrementAndGet();
                    } finally {
                        m.release();
                    }
                }
                return null;
            }));
        }
        for (Future<?> f : fs) {
            f.get(120, TimeUnit.SECONDS);
        }
        pool.shutdown();
        check(maxHolders.get() == 1 && taken.get() == 60, "lock: max holders " + maxHolders + ", taken " + taken);
        System.out.println("ok lock");
    }

    // LeaderLatch: one leader among three; when it leaves, another takes over.
    static void leaderLatch(CuratorFramework[] clients) throws Exception {
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < clients.length; i++) {
            LeaderLatch l = new LeaderLatch(clients[i], base + "/leader", "p" + i);
            l.start();
            latches.add(l);
        }
        LeaderLatch leader = awaitOneLeader(latches);
        leader.close();
        latches.remove(leader);
        LeaderLatch next = awaitOneLeader(latches);
        check(next != leader, "a new leader");
        for (LeaderLatch l : latches) {
            l.close();
        }
        System.out.println("ok leader-latch");
    }

    static LeaderLatch awaitOneLeader(List<LeaderLatch> latches) throws Exception {
        long deadline = System.currentTimeMillis() + 20000;
        while (System.currentTimeMillis() < deadline) {
            List<LeaderLatch> leaders = new ArrayList<>();
            for (LeaderLatch l : latches) {
                if (l.hasLeadership()) {
                    leaders.add(l);
                }
            }
            check(leaders.size() <= 1, "two leaders at once");
            if (leaders.size() == 1) {
                return leaders.get(0);
            }
            Thread.sleep(20);
        }
        throw new AssertionError("no leader elected");
    }

    // SimpleDistributedQueue: FIFO from one producer to a consumer on another session.
    static void queue(CuratorFramework[] clients) throws Exception {
        SimpleDistributedQueue producer = new SimpleDistributedQueue(clients[0], base + "/queue");
        SimpleDistributedQueue consumer = new SimpleDistributedQueue(clients[1], base + "/queue");
        for (int i = 0; i < 20; i++) {
            check(producer.offer(b("item" + i)), "offer");
        }
        for (int i = 0; i < 20; i++) {
            byte[] item = consumer.poll(10, TimeUnit.SECONDS);
            check(item != null && new String(item, StandardCharsets.UTF_8).equals("item" + i), "queue order at " + i);
        }
        check(consumer.poll() == null, "queue drained");
        System.out.println("ok queue");
    }

    // DistributedAtomicLong (optimistic CAS on a znode's version) and SharedCount.
    static void counters(CuratorFramework[] clients) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(clients.length);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework c : clients) {
            fs.add(pool.submit(() -> {
                DistributedAtomicLong n = new DistributedAtomicLong(c, base + "/counter",
                        new ExponentialBackoffRetry(5, 30));
                for (int i = 0; i < 30; i++) {
                    AtomicValue<Long> v;
                    do {
                        v = n.increment();
                    } while (!v.succeeded());
                }
                return null;
            }));
        }
        for (Future<?> f : fs) {
            f.get(120, TimeUnit.SECONDS);
        }
        pool.shutdown();
        long total = new DistributedAtomicLong(clients[0], base + "/counter", new ExponentialBackoffRetry(5, 3)).get().postValue();
        check(total == 30L * clients.length, "atomic long total " + total);

        SharedCount a = new SharedCount(clients[0], base + "/shared", 0);
        SharedCount bb = new SharedCount(clients[1], base + "/shared", 0);
        a.start();
        bb.start();
        org.apache.curator.framework.recipes.shared.VersionedValue<Integer> before = a.getVersionedValue();
        check(a.trySetCount(before, 5), "shared count set");
        check(!bb.trySetCount(before, 6), "a set from a stale version is refused");
        long deadline = System.currentTimeMillis() + 10000;
        while (bb.getCount() != 5 && System.currentTimeMillis() < deadline) {
            Thread.sleep(10);
        }
        check(bb.getCount() == 5, "shared count seen by the other session");
        a.close();
        bb.close();
        System.out.println("ok counters");
    }

    // CuratorCache: a cache on one session sees another session's creates, updates, deletes.
    static void cache(CuratorFramework[] clients) throws Exception {
        String path = base + "/cache";
        clients[0].create().forPath(path);
        BlockingQueue<String> seen = new LinkedBlockingQueue<>();
        CountDownLatch primed = new CountDownLatch(1);
        CuratorCache cache = CuratorCache.build(clients[1], path);
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(n -> {
                    if (!n.getPath().equals(path)) { // the cache's own root shows up as created
                        seen.add("create " + n.getPath());
                    }
                })
                .forChanges((o, n) -> seen.add("change " + n.getPath() + " " + new String(n.getData(), StandardCharsets.UTF_8)))
                .forDeletes(o -> seen.add("delete " + o.getPath()))
                .forInitialized(primed::countDown)
                .build());
        cache.start();
        check(primed.await(10, TimeUnit.SECONDS), "cache initialized");
        // one change at a time: the cache watches a new node only once it has seen it
        clients[0].create().forPath(path + "/x", b("1"));
        expect(seen, "create " + path + "/x");
        clients[0].setData().forPath(path + "/x", b("2"));
        expect(seen, "change " + path + "/x 2");
        clients[0].delete().forPath(path + "/x");
        expect(seen, "delete " + path + "/x");
        cache.close();
        System.out.println("ok cache");
    }

    static void expect(BlockingQueue<String> seen, String want) throws Exception {
        String got = seen.poll(10, TimeUnit.SECONDS);
        check(want.equals(got), "cache event: want " + want + ", got " + got);
    }

    // DistributedDoubleBarrier: nobody passes enter() until all three arrived.
    static void barrier(CuratorFramework[] clients) throws Exception {
        String path = base + "/barrier";
        AtomicInteger arrived = new AtomicInteger();
        AtomicInteger passedEarly = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(clients.length);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework c : clients) {
            fs.add(pool.submit(() -> {
                DistributedDoubleBarrier b = new DistributedDoubleBarrier(c, path, clients.length);
                arrived.incrementAndGet();
                check(b.enter(30, TimeUnit.SECONDS), "barrier entered");
                if (arrived.get() < clients.length) {
                    passedEarly.incrementAndGet();
                }
                check(b.leave(30, TimeUnit.SECONDS), "barrier left");
                return null;
            }));
        }
        for (Future<?> f : fs) {
            f.get(90, TimeUnit.SECONDS);
        }
        pool.shutdown();
        check(passedEarly.get() == 0, "a member passed the barrier early");
        System.out.println("ok barrier");
    }

    // Service discovery: two instances registered (ephemeral znodes with JSON payloads),
    // found by another session; one unregistered, then gone.
    static void discovery(CuratorFramework[] clients) throws Exception {
        String path = base + "/services";
        ServiceDiscovery<Void> reg = ServiceDiscoveryBuilder.builder(Void.class).client(clients[0]).basePath(path).build();
        reg.start();
        ServiceInstance<Void> i1 = ServiceInstance.<Void>builder().name("api").address("10.0.0.1").port(8080).build();
        ServiceInstance<Void> i2 = ServiceInstance.<Void>builder().name("api").address("10.0.0.2").port(8080).build();
        reg.registerService(i1);
        reg.registerService(i2);
        ServiceDiscovery<Void> finder = ServiceDiscoveryBuilder.builder(Void.class).client(clients[1]).basePath(path).build();
        finder.start();
        Collection<ServiceInstance<Void>> found = finder.queryForInstances("api");
        check(found.size() == 2, "two instances found: " + found.size());
        reg.unregisterService(i1);
        found = finder.queryForInstances("api");
        check(found.size() == 1 && found.iterator().next().getAddress().equals("10.0.0.2"), "one left");
        finder.close();
        reg.close();
        System.out.println("ok discovery");
    }
}
