import java.nio.file.*;
import java.util.*;

public class Context {
    public static void main(String[] args) throws Exception {
        String g = System.getenv("GREETING");
        System.out.println(g == null ? "(unset)" : g);
        for (String l : Files.readAllLines(Paths.get("/etc/sample/app.conf"))) {
            if (l.startsWith("marker=")) { System.out.println(l); break; }
        }
        System.out.println(Files.readString(Paths.get("/etc/hostname")).trim());
        System.out.println(Files.readString(Paths.get("/var/run/secrets/kubernetes.io/serviceaccount/namespace")).trim());
        System.out.println("size>0 " + (Files.size(Paths.get("/etc/sample/app.conf")) > 0 ? 1 : 0));
        boolean found = false;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Paths.get("/etc/sample"))) {
            for (Path p : ds) if (p.getFileName().toString().equals("app.conf")) found = true;
        }
        System.out.println("listed app.conf " + (found ? 1 : 0));
    }
}
